"""The membership topic (its latest record per user is the user's stored segment and tags),
and the segments' names in change events and metrics."""

from __future__ import annotations

import json

from prometheus_client import CollectorRegistry

from operators.features import NO_SEGMENT
from operators.record import unpack_state
from operators.segments import segment_profiles
from stream.feeds.simulator import encode, generate_events
from stream.settings import Settings
from stream.twins.broker import InMemoryBroker
from stream.twins.model_store import InMemoryModelStore
from stream.twins.state_store import InMemoryStateStore
from stream.wiring import build_processor, in_memory_parts

SETTINGS = Settings(max_batch_records=300, snapshot_every_samples=500, train_sample_permille=1000)


def test_the_latest_membership_record_per_user_is_the_stored_assignment() -> None:
    broker = InMemoryBroker()
    for event in generate_events(80, seed=5, days=30):
        broker.append(SETTINGS.input_topic, *encode(event))
    parts = in_memory_parts(SETTINGS, broker)
    processor = build_processor(SETTINGS, parts)
    while processor.run_once():
        pass

    changes = [json.loads(r.value) for r in broker.records(SETTINGS.output_topic)]
    changes = [c for c in changes if c["kind"] == "user_changed"]
    records = broker.records(SETTINGS.membership_topic)
    # One membership record per change event, in the same order, keyed by user id.
    assert [json.loads(r.value)["change_id"] for r in records] == [c["change_id"] for c in changes]
    assert changes
    latest: dict[str, dict[str, object]] = {}
    for record in records:  # what compaction keeps: the last value per key
        document = json.loads(record.value)
        assert record.key == document["user_id"].encode()
        latest[document["user_id"]] = document

    assert isinstance(parts.state_store, InMemoryStateStore)
    stored = {u: unpack_state(b) for u, b in parts.state_store.users().items()}
    names = [tag.name for tag in SETTINGS.tag_definitions]
    expected = {
        user: (
            None if state.segment == NO_SEGMENT else state.segment,
            [name for bit, name in enumerate(names) if state.tags >> bit & 1],
            state.seq,
        )
        for user, state in stored.items()
        if state.seq  # users with a change: the others were never placed
    }
    assert {u: (d["segment"], d["tags"], d["seq"]) for u, d in latest.items()} == expected
    assert any(segment is not None for segment, _, _ in expected.values())


def test_change_events_carry_the_segments_names_and_a_metric_has_them() -> None:
    broker = InMemoryBroker()
    for event in generate_events(80, seed=5, days=30):
        broker.append(SETTINGS.input_topic, *encode(event))
    parts = in_memory_parts(SETTINGS, broker)
    assert isinstance(parts.model_store, InMemoryModelStore)
    parts.model_store.names = {0: "loyal"}  # as `PUT /v1/segments/0/name` would
    registry = CollectorRegistry()
    processor = build_processor(SETTINGS, parts, registry=registry)
    while processor.run_once():
        pass

    changes = [json.loads(r.value or b"") for r in broker.records(SETTINGS.output_topic)]
    placed = [c for c in changes if c["kind"] == "user_changed" and c["segment_after"] is not None]
    # Segment 0 by the analysts' name; the others by the name generated from the model then.
    assert {c["segment_name"] for c in placed if c["segment_after"] == 0} == {"loyal"}
    assert all(c["segment_name"] for c in placed)
    snapshot = processor.snapshot
    assert snapshot is not None
    generated = {p.segment: p.name for p in segment_profiles(snapshot)}
    # Each segment's history, written with each model (GET /v1/segments serves it).
    lineage = parts.model_store.lineage
    assert set(snapshot.segment_ids) <= set(lineage)
    assert all(1 <= lineage[s]["created_version"] <= snapshot.version for s in snapshot.segment_ids)
    for segment in snapshot.segment_ids:
        name = "loyal" if segment == 0 else generated[segment]
        labels = {"segment": str(segment), "name": name}
        assert registry.get_sample_value("segstream_segment_info", labels) == 1.0
