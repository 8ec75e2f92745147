"""Expiry in event time, through the loop on the twins: idle users go, and say so."""

from __future__ import annotations

import json
from collections import Counter

from prometheus_client import CollectorRegistry

from operators.features import DAY_MS, NO_SEGMENT
from operators.record import unpack_state
from stream.feeds.simulator import encode, generate_events
from stream.settings import Settings
from stream.twins.broker import InMemoryBroker
from stream.twins.state_store import InMemoryStateStore
from stream.wiring import build_processor, in_memory_parts

IDLE_DAYS = 3
SETTINGS = Settings(
    max_batch_records=300,
    snapshot_every_samples=500,
    train_sample_permille=1000,
    max_idle_days=IDLE_DAYS,
    rescore_interval_s=86_400,
)


def test_idle_users_expire_with_an_event_a_tombstone_and_their_segment_size() -> None:
    broker = InMemoryBroker()
    for event in generate_events(120, seed=5, days=40):
        broker.append(SETTINGS.input_topic, *encode(event))
    parts = in_memory_parts(SETTINGS, broker)
    registry = CollectorRegistry()
    processor = build_processor(SETTINGS, parts, registry=registry)
    while processor.run_once():
        pass

    published = [json.loads(r.value or b"") for r in broker.records(SETTINGS.output_topic)]
    last_kind = {d["user_id"]: d["kind"] for d in published if "user_id" in d}
    expired = [d for d in published if d["kind"] == "user_expired"]
    assert len(expired) > 20  # many users idle 3 days in 40
    removed = registry.get_sample_value("segstream_users_removed_total", {"reason": "expired"})
    assert removed == len(expired)
    for doc in expired:
        assert doc["event_id"] == f"expired:{doc['event_time_ms']}"
        assert set(doc) >= {"segment_before", "tags_before", "seq", "change_id"}

    store = parts.state_store
    assert isinstance(store, InMemoryStateStore)
    membership: dict[bytes, bytes | None] = {}
    for record in broker.records(SETTINGS.membership_topic):
        assert record.key is not None
        membership[record.key] = record.value
    for partition, data in store._data.items():
        stored = {u: unpack_state(b) for u, b in data.users.items()}
        for user, state in stored.items():
            # Nobody idle past the limit at the partition's watermark is left.
            assert state.last_seen_ms + IDLE_DAYS * DAY_MS > data.watermark_ms, user
            assert last_kind.get(user) != "user_expired"
            if state.seq:
                assert membership[user.encode()] is not None
        gone = {u for u, kind in last_kind.items() if kind == "user_expired"}
        assert not gone & set(data.users) and not gone & set(data.dues)
        assert not gone & set(data.pending)
        # Segment sizes count the users stored, not the ones that expired.
        placed = Counter(s.segment for s in stored.values() if s.segment != NO_SEGMENT)
        assert store.segment_sizes([partition]) == dict(placed)
    for user, kind in last_kind.items():
        if kind == "user_expired":
            assert membership[user.encode()] is None  # a tombstone: compaction forgets them
