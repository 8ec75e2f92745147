"""A model that retires a segment: the users in it are moved to the nearest segment of the new
model at once (a scan of the partition's users, a chunk per loop iteration), with a change
event each, instead of keeping the retired id until their next re-scoring."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

from operators.record import unpack_state
from operators.segments import SegmentSnapshot
from stream.feeds.simulator import encode, generate_events
from stream.settings import Settings
from stream.twins.broker import InMemoryBroker
from stream.twins.model_store import InMemoryModelStore
from stream.twins.state_store import InMemoryStateStore
from stream.wiring import Parts, build_processor, in_memory_parts
from tests.stream.test_publisher import FakeClock
from tests.support.model import trained_model

SETTINGS = Settings(max_batch_records=300, training=False, sweep_batch_users=50)


def test_users_of_a_retired_segment_move_at_once(tmp_path: Path) -> None:
    model = trained_model(
        itertools.islice(generate_events(300, seed=3, days=40), 10_000), tmp_path / "m.json"
    )
    snapshot = SegmentSnapshot.from_dict(model["snapshot"])
    clock = FakeClock()
    models = InMemoryModelStore(monotonic=clock.time_s)
    models.save(snapshot, None)
    broker, store = InMemoryBroker(), InMemoryStateStore()
    parts = in_memory_parts(SETTINGS, broker)
    processor = build_processor(
        SETTINGS, Parts(parts.source, parts.sink, store, models), clock=clock
    )
    events = list(itertools.islice(generate_events(250, seed=12, days=30), 6000))
    for event in events[:5000]:
        broker.append(SETTINGS.input_topic, *encode(event))
    while processor.run_once():
        pass
    held = {u: unpack_state(b).segment for u, b in store.users().items()}
    retired = max(set(held.values()), key=list(held.values()).count)  # the biggest segment
    members = {u for u, s in held.items() if s == retired}
    assert len(members) > SETTINGS.sweep_batch_users  # the scan takes several chunks

    # The next model replaces that segment with a new one (same center, a new id).
    ids = tuple(99 if s == retired else s for s in snapshot.segment_ids)
    models.save(replace(snapshot, version=snapshot.version + 1, segment_ids=ids), None)
    clock.now_s += 11  # past a third of the lease: the processor looks at the store again
    marks = broker.end_offsets(SETTINGS.output_topic)
    for event in events[5000:5010]:  # a batch, so the processor picks the model up
        broker.append(SETTINGS.input_topic, *encode(event))
    for _ in range(40):
        processor.run_once()
    now = {u: unpack_state(b).segment for u, b in store.users().items()}
    assert all(segment in ids for segment in now.values())
    assert sum(now[u] == 99 for u in members) > len(members) / 2  # mostly to its successor
    moved = [
        json.loads(r.value)
        for r in broker.records(SETTINGS.output_topic)
        if r.offset >= marks.get(r.partition, 0)
    ]
    reassigned = {c["user_id"] for c in moved if c["event_id"].startswith("reassign:")}
    assert members - reassigned <= {e["user_id"] for e in events[5000:5010]}
    assert store.segment_sizes(processor.partitions.owned).get(retired, 0) == 0


def test_users_built_before_any_model_take_a_segment_when_the_first_arrives(
    tmp_path: Path,
) -> None:
    """A new deployment, or a rebuild after Redis lost the model: users scored while no model
    was published have no segment; adopting the first model scans them into one even though
    no further event comes."""
    model = trained_model(
        itertools.islice(generate_events(300, seed=3, days=40), 10_000), tmp_path / "m.json"
    )
    snapshot = SegmentSnapshot.from_dict(model["snapshot"])
    clock = FakeClock()
    models = InMemoryModelStore(monotonic=clock.time_s)
    broker, store = InMemoryBroker(), InMemoryStateStore()
    parts = in_memory_parts(SETTINGS, broker)
    processor = build_processor(
        SETTINGS, Parts(parts.source, parts.sink, store, models), clock=clock
    )
    for event in itertools.islice(generate_events(200, seed=5, days=20), 3000):
        broker.append(SETTINGS.input_topic, *encode(event))
    while processor.run_once():
        pass
    before = {u: unpack_state(b).segment for u, b in store.users().items()}
    assert len(before) > SETTINGS.sweep_batch_users and set(before.values()) == {-1}

    models.save(snapshot, None)
    clock.now_s += 11  # past a third of the lease: the idle processor looks at the store
    for _ in range(40):
        processor.run_once()
    after = {u: unpack_state(b).segment for u, b in store.users().items()}
    assert set(after) == set(before)
    assert all(segment in snapshot.segment_ids for segment in after.values())
    firsts = [json.loads(r.value) for r in broker.records(SETTINGS.output_topic)]
    assigned = {c["user_id"] for c in firsts if c.get("event_id", "").startswith("reassign:")}
    assert assigned == set(before)
    sizes = store.segment_sizes(processor.partitions.owned)
    assert sum(sizes.values()) == len(before)
