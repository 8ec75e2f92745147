"""After the state store loses everything, a restarted process rebuilds every user from the log
without publishing again what was published, then publishes what an uninterrupted run would,
under a higher epoch: every user's seq rises past the loss."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from operators.record import unpack_state
from operators.segments import SegmentSnapshot
from operators.tags import TagModel
from stream.errors import StateLost
from stream.feeds.simulator import encode, generate_events
from stream.loop.processor import Processor
from stream.loop.rebuild import EPOCH_SHIFT, Note, Rebuilds
from stream.ports import Committed, Partition
from stream.settings import Settings
from stream.twins.broker import InMemoryBroker
from stream.twins.model_store import InMemoryModelStore
from stream.twins.state_store import InMemoryStateStore
from stream.wiring import Parts, build_processor, in_memory_parts
from tests.support.events import expected_states, features_only
from tests.support.model import TAGS, trained_model

SETTINGS = Settings(
    max_batch_records=300, training=False, tags=TAGS, label_every_days=1, train_sample_permille=200
)
EVENTS = list(itertools.islice(generate_events(200, seed=17, days=40), 8000))
BEFORE, AFTER = EVENTS[:5000], EVENTS[5000:]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return trained_model(
        itertools.islice(generate_events(300, seed=3, days=40), 10_000),
        tmp_path_factory.mktemp("model") / "model.json",
    )


def processor(
    broker: InMemoryBroker, store: InMemoryStateStore, model: dict[str, Any]
) -> Processor:
    models = InMemoryModelStore()
    models.save(SegmentSnapshot.from_dict(model["snapshot"]), None)
    models.save_tags({t["tag"]: TagModel.from_dict(t) for t in model["tags"]})
    parts = in_memory_parts(SETTINGS, broker)
    return build_processor(SETTINGS, Parts(parts.source, parts.sink, store, models))


def feed(broker: InMemoryBroker, events: list[dict[str, Any]]) -> None:
    for event in events:
        broker.append(SETTINGS.input_topic, *encode(event))


def drain(process: Processor) -> None:
    while process.run_once():
        pass


def changes(
    broker: InMemoryBroker,
    since: dict[Partition, int] | None = None,
) -> list[dict[str, Any]]:
    """The change topic's records (after ``since``, a former ``ends``), in order per user."""
    return [
        json.loads(r.value)
        for r in broker.records(SETTINGS.output_topic)
        if r.offset >= (since or {}).get(r.partition, 0)
    ]


def ends(broker: InMemoryBroker) -> dict[Partition, int]:
    return broker.end_offsets(SETTINGS.output_topic)


def test_a_rebuild_publishes_nothing_twice_and_raises_the_epoch(model: dict[str, Any]) -> None:
    calm = InMemoryBroker()
    feed(calm, EVENTS)
    drain(processor(calm, InMemoryStateStore(), model))
    expected = changes(calm)

    broker, store = InMemoryBroker(), InMemoryStateStore()
    feed(broker, BEFORE)
    first = processor(broker, store, model)
    drain(first)
    published, mark = changes(broker), ends(broker)
    store.lose_everything()
    feed(broker, AFTER)
    with pytest.raises(StateLost):
        first.run_once()  # notices before publishing anything
    assert changes(broker) == published

    rebuilt = InMemoryStateStore()
    second = processor(broker, rebuilt, model)
    drain(second)
    after = changes(broker, since=mark)
    # Nothing from before the loss again; together, exactly the uninterrupted run's changes.
    assert {c["change_id"] for c in published}.isdisjoint(c["change_id"] for c in after)
    assert sorted(c["change_id"] for c in published + after) == sorted(
        c["change_id"] for c in expected
    )
    # Under epoch 1: the same changes, each seq one epoch higher than the calm run's.
    calm_seq = {c["change_id"]: c["seq"] for c in expected}
    assert after and all(c["seq"] == calm_seq[c["change_id"]] + (1 << EPOCH_SHIFT) for c in after)
    for user in {c["user_id"] for c in expected}:
        seqs = [c["seq"] for c in published + after if c["user_id"] == user]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # Every user's features are exact, and the rebuild is counted apart.
    states = {u: features_only(unpack_state(b)) for u, b in rebuilt.users().items()}
    assert states == {u: features_only(s) for u, s in expected_states(EVENTS).items()}
    assert second.metrics.partitions.rebuilt_events._value.get() == len(BEFORE)
    assert {Note.decode(c.metadata).epoch for c in broker.commits.values()} == {1}


def test_a_rebuilt_partition_commits_nothing_below_the_published_offset() -> None:
    class Source:
        def __init__(self) -> None:
            self.commits: list[dict[Partition, int]] = []

        def committed(self) -> dict[Partition, Committed]:
            return {
                p0: Committed(100, Note(2, 5).encode()),
                p1: Committed(120, Note(2, 3).encode()),
                Partition("t", 2): Committed(9, Note(0, 7).encode()),
            }  # the trainer's

        def commit(self, offsets: dict[Partition, int], metadata: Any = None) -> bool:
            self.commits.append(dict(offsets))
            return True

    p0, p1 = Partition("t", 0), Partition("t", 1)
    source = Source()
    rebuilds = Rebuilds()
    assert rebuilds.assigned(source, {p0: None, p1: 150}, 3) == 7  # type: ignore[arg-type]
    assert source.commits == [{p0: 100}]  # the new epoch, recorded first
    assert rebuilds.seq_base(p0) == 3 << EPOCH_SHIFT and rebuilds.seq_base(p1) == 2 << 32
    assert rebuilds.quiet(p0, 60) and rebuilds.quiet(p0, 100) and not rebuilds.quiet(p0, 101)
    assert not rebuilds.quiet(p1, 151)
    assert rebuilds.saved({p0: 60, p1: 160}) == {p1: 160}
    assert rebuilds.saved({p0: 100}) == {p0: 100}  # caught up: publishing again
    assert not rebuilds.quiet(p0, 101)
    rebuilds.note_model(source, 8)  # type: ignore[arg-type]
    assert source.commits[-1] == {p0: 100, p1: 160}


def test_unreadable_commit_notes_read_as_epoch_zero() -> None:
    assert Note.decode("") == Note() == Note.decode("{not json") == Note.decode('{"epoch":"x"}')
    assert Note.decode(Note(4, 9).encode()) == Note(4, 9)


def test_the_model_file_helper_writes_json(tmp_path: Path) -> None:
    doc = trained_model(
        itertools.islice(generate_events(100, seed=2, days=20), 3000), tmp_path / "m.json"
    )
    assert json.loads((tmp_path / "m.json").read_text()) == doc


def test_a_rebuild_taken_over_midway_keeps_its_epoch() -> None:
    p0 = Partition("t", 0)

    class Source:
        def __init__(self) -> None:
            self.commits: list[dict[Partition, int]] = []

        def committed(self) -> dict[Partition, Committed]:
            return {p0: Committed(100, Note(3, 5, rebuilding=True).encode())}

        def commit(self, offsets: dict[Partition, int], metadata: Any = None) -> bool:
            self.commits.append(dict(offsets))
            return True

    source, rebuilds = Source(), Rebuilds()
    rebuilds.assigned(source, {p0: 40}, 5)  # type: ignore[arg-type]
    assert source.commits == [] and rebuilds.seq_base(p0) == 3 << EPOCH_SHIFT
    assert rebuilds.quiet(p0, 90)
    assert Note.decode(rebuilds.notes([p0], 5)[p0]).rebuilding
    assert rebuilds.saved({p0: 100}) == {p0: 100}
    assert not Note.decode(rebuilds.notes([p0], 5)[p0]).rebuilding  # publishing from here
