"""The loop on the in-memory twins: exactly-once state, dead letters, retries, fencing."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
from collections import Counter
from collections.abc import Collection, Mapping

import pytest
from prometheus_client import CollectorRegistry

from operators.events import EVENT_TYPES
from operators.record import unpack_state
from operators.steps import event_columns as event_columns_step
from stream.errors import DependencyError, StateLost
from stream.feeds.simulator import MALFORMED, encode, generate_events
from stream.loop.processor import Processor
from stream.ports import Partition, PartitionWrite
from stream.settings import Settings
from stream.twins.broker import InMemoryBroker
from stream.twins.model_store import InMemoryModelStore
from stream.twins.state_store import InMemoryStateStore
from stream.wiring import Parts, build_processor, in_memory_parts
from tests.support.events import expected_states, features_only

SETTINGS = Settings(
    max_batch_records=300, snapshot_every_samples=500, retry_attempts=3, train_sample_permille=1000
)


def feed(broker: InMemoryBroker, users: int = 60, malformed: int = 0) -> list[dict[str, object]]:
    events = list(generate_events(users, seed=3, days=20))
    for event in events:
        broker.append(SETTINGS.input_topic, *encode(event))
    for i in range(malformed):
        broker.append(SETTINGS.input_topic, b"u", MALFORMED[i % len(MALFORMED)])
    return events


def drain(processor: Processor) -> None:
    while processor.run_once():
        pass


def stored_users(parts: Parts) -> dict[str, bytes]:
    assert isinstance(parts.state_store, InMemoryStateStore)
    return parts.state_store.users()


def test_every_valid_event_counts_once_and_bad_ones_are_dead_lettered() -> None:
    broker = InMemoryBroker()
    events = feed(broker, malformed=len(MALFORMED))
    parts = in_memory_parts(SETTINGS, broker)
    registry = CollectorRegistry()
    processor = build_processor(SETTINGS, parts, registry=registry)
    drain(processor)

    expected = expected_states(events)
    got = {u: unpack_state(b) for u, b in stored_users(parts).items()}
    assert {u: features_only(s) for u, s in got.items()} == {
        u: features_only(s) for u, s in expected.items()
    }
    dead = [json.loads(r.value) for r in broker.records(SETTINGS.dlq_topic)]
    assert sorted(base64.b64decode(d["value_base64"]) for d in dead) == sorted(MALFORMED)
    assert all(d["reason"] and d["detail"] for d in dead)
    published = [json.loads(r.value) for r in broker.records(SETTINGS.output_topic)]
    changes = [c for c in published if c["kind"] == "user_changed"]
    assert changes and {c["user_id"] for c in changes} <= set(expected)
    assert (
        registry.get_sample_value("segstream_events_dead_lettered_total", {"reason": "not_json"})
        == 2.0
    )
    assert sum(
        registry.get_sample_value("segstream_events_processed_total", {"type": t}) or 0
        for t in ("view", "add_to_cart", "purchase")
    ) == len(events)
    ends = broker.end_offsets(SETTINGS.input_topic)
    assert all(parts.state_store.next_offset(p) == end for p, end in ends.items() if end)


class FlakyStore(InMemoryStateStore):
    """Fails the first ``failures`` saves after writing only the first partition."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    def save(self, writes: Mapping[Partition, PartitionWrite]) -> None:
        if self.failures:
            self.failures -= 1
            first = dict(list(writes.items())[:1])
            super().save(first)
            raise DependencyError("redis: connection reset")
        super().save(writes)


def test_a_retried_batch_after_a_partial_save_counts_nothing_twice() -> None:
    broker = InMemoryBroker()
    events = feed(broker)
    parts = in_memory_parts(SETTINGS, broker)
    parts = Parts(parts.source, parts.sink, FlakyStore(failures=2), parts.model_store)
    sleeps: list[float] = []
    processor = build_processor(SETTINGS, parts, sleep=sleeps.append)
    drain(processor)
    assert sleeps == [0.5, 1.0]
    got = {u: features_only(unpack_state(b)) for u, b in stored_users(parts).items()}
    assert got == {u: features_only(s) for u, s in expected_states(events).items()}


def test_gives_up_after_the_configured_attempts() -> None:
    broker = InMemoryBroker()
    feed(broker)
    parts = in_memory_parts(SETTINGS, broker)
    parts = Parts(parts.source, parts.sink, FlakyStore(failures=99), parts.model_store)
    processor = build_processor(SETTINGS, parts, sleep=lambda s: None)
    with pytest.raises(DependencyError):
        processor.run_once()


def test_a_fenced_partition_is_left_to_its_new_owner() -> None:
    broker = InMemoryBroker()
    feed(broker)
    parts = in_memory_parts(SETTINGS, broker)
    processor = build_processor(SETTINGS, parts)
    processor.run_once()
    assert isinstance(parts.state_store, InMemoryStateStore)
    thief = parts.state_store.handle()
    stolen = Partition(SETTINGS.input_topic, 0)
    offset_when_stolen = thief.claim(stolen)
    drain(processor)
    assert parts.state_store.next_offset(stolen) == offset_when_stolen
    assert stolen not in processor.partitions.owned
    others = [Partition(SETTINGS.input_topic, i) for i in (1, 2, 3)]
    ends = broker.end_offsets(SETTINGS.input_topic)
    assert all(parts.state_store.next_offset(p) == ends[p] for p in others)


def test_stops_between_batches_when_asked() -> None:
    broker = InMemoryBroker()
    feed(broker)
    processor = build_processor(SETTINGS, in_memory_parts(SETTINGS, broker))
    calls = iter([False, False, True])
    processor.run(lambda: next(calls))
    assert processor.batches == 2


def test_publishes_versioned_snapshots_and_resumes_them_after_restart() -> None:
    broker = InMemoryBroker()
    feed(broker, users=120)
    parts = in_memory_parts(SETTINGS, broker)
    registry = CollectorRegistry()
    processor = build_processor(SETTINGS, parts, registry=registry)
    drain(processor)
    assert processor.snapshot is not None and processor.snapshot.version >= 2
    assert registry.get_sample_value("segstream_model_version") == processor.snapshot.version
    restarted = build_processor(
        SETTINGS,
        Parts(
            in_memory_parts(SETTINGS, broker).source,
            parts.sink,
            parts.state_store,
            parts.model_store,
        ),
    )
    assert restarted.snapshot == processor.snapshot
    # Segment sizes follow the published changes; volatility is exposed per live segment.
    sizes = parts.state_store.segment_sizes(processor.partitions.owned)
    published = [json.loads(r.value) for r in broker.records(SETTINGS.output_topic)]
    latest: dict[str, int] = {}
    for doc in published:
        if doc["kind"] == "user_changed":
            latest[doc["user_id"]] = doc["segment_after"]
    assert sizes == {s: list(latest.values()).count(s) for s in set(latest.values())}
    for segment in processor.snapshot.segment_ids:
        assert (
            registry.get_sample_value("segstream_segment_volatility", {"segment": str(segment)})
            is not None
        )
    # The trainer is saved with each snapshot, so a restart continues from that point.
    assert restarted.trainer is not None and processor.trainer is not None
    assert restarted.trainer.version == processor.snapshot.version
    assert processor.snapshot.version * 500 <= restarted.trainer.samples
    assert restarted.trainer.samples <= processor.trainer.samples


def test_assignment_claims_each_partition(monkeypatch: pytest.MonkeyPatch) -> None:
    claimed: list[Partition] = []
    store = InMemoryStateStore()
    original = store.claim

    def claim(partition: Partition) -> int | None:
        claimed.append(partition)
        return original(partition)

    monkeypatch.setattr(store, "claim", claim)
    broker = InMemoryBroker()
    feed(broker, users=5)
    parts = in_memory_parts(SETTINGS, broker)
    processor = build_processor(SETTINGS, Parts(parts.source, parts.sink, store, parts.model_store))
    processor.run_once()
    assert sorted(claimed) == [Partition(SETTINGS.input_topic, i) for i in range(4)]
    revoked: Collection[Partition] = list(processor.partitions.owned)
    processor.partitions.revoked(revoked)
    assert processor.partitions.owned == set()


class BrokenClaims(InMemoryStateStore):
    def claim(self, partition: Partition) -> int | None:
        raise DependencyError("redis: connection refused")


@pytest.mark.parametrize(
    "backend",
    [
        "memory",
        pytest.param("confluent-kafka", marks=pytest.mark.kafka),
        pytest.param("kafka-python", marks=pytest.mark.kafka),
    ],
)
def test_a_failed_claim_stops_the_consumer_instead_of_processing_unowned_partitions(
    backend: str,
) -> None:
    from stream.errors import AssignmentFailed
    from stream.wiring import kafka_source
    from tests.support.servers import KAFKA_BOOTSTRAP, create_topics, unique

    broker = InMemoryBroker()
    feed(broker, users=5)
    parts = in_memory_parts(SETTINGS, broker)
    source = parts.source
    if backend != "memory":
        topic = unique("claims")
        create_topics(topic)
        source = kafka_source(
            Settings(
                kafka_bootstrap=KAFKA_BOOTSTRAP,
                kafka_client=backend,
                input_topic=topic,
                group=unique("group"),
                session_timeout_ms=6000,
            )
        )
    processor = build_processor(
        SETTINGS, Parts(source, parts.sink, BrokenClaims(), parts.model_store), sleep=lambda s: None
    )
    with pytest.raises(AssignmentFailed):
        for _ in range(100):  # Kafka assigns within a few polls
            processor.run_once()
    source.close()


def test_metrics_follow_the_flow_the_stages_and_the_stores() -> None:
    broker = InMemoryBroker()
    events = list(generate_events(40, seed=3, days=20))
    clock_s = 1_800_000_000.0  # 2027: after the simulated events, as a live clock is
    for event in events:  # records stamped 5 s before the (fake) clock
        broker.append(SETTINGS.input_topic, *encode(event), timestamp_ms=int((clock_s - 5) * 1000))
    broker.append(SETTINGS.input_topic, b"u", MALFORMED[0], timestamp_ms=int(clock_s * 1000))

    class Clock:
        def time_s(self) -> float:
            return clock_s

    registry = CollectorRegistry()
    processor = build_processor(
        SETTINGS, in_memory_parts(SETTINGS, broker), registry=registry, clock=Clock()
    )
    passes = []  # passes with no records: the first model's scan gives earlier users a segment
    run_pass = processor.run_pass
    processor.run_pass = lambda batch: passes.append(batch) or run_pass(batch)  # type: ignore[method-assign]
    drain(processor)

    def value(name: str, **labels: str) -> float:
        found = registry.get_sample_value(name, labels)
        assert found is not None, (name, labels)
        return found

    topic = SETTINGS.input_topic
    consumed = sum(
        value("segstream_events_consumed_total", topic=topic, type=t) for t in EVENT_TYPES
    )
    assert consumed == len(events)
    assert value("segstream_events_consumed_total", topic=topic, type="invalid") == 1
    assert value("segstream_records_produced_total", topic=SETTINGS.dlq_topic) == 1
    assert value("segstream_records_produced_total", topic=SETTINGS.output_topic) == len(
        broker.records(SETTINGS.output_topic)
    )
    assert value("segstream_end_to_end_latency_seconds_count") == len(events) + 1
    assert 4 < value("segstream_end_to_end_latency_seconds_sum") / (len(events) + 1) <= 5
    assert value("segstream_last_event_timestamp_seconds", partition="0") >= clock_s - 5
    for stage in ("poll", "decode", "load", "operators", "produce", "save", "commit", "train"):
        assert value("segstream_stage_duration_seconds_count", stage=stage) >= 1, stage
    assert value("segstream_redis_operation_duration_seconds_count", operation="save") == value(
        "segstream_batch_duration_seconds_count"
    ) + len(passes)
    assert value("segstream_offset_commits_total", result="success") == value(
        "segstream_batch_duration_seconds_count"
    )
    assert value("segstream_rebalances_total", kind="assigned") == 1
    assert value("segstream_consumer_lag_records", partition="0") == 0
    assert value("segstream_events_in_progress") == 0
    assert value("segstream_trainer") == 1
    version = str(int(value("segstream_model_version")))
    assert (
        value("segstream_build_info", version=processor.metrics.version, model_version=version) == 1
    )
    processor.partitions.revoked(list(processor.partitions.owned))
    assert registry.get_sample_value("segstream_consumer_lag_records", {"partition": "0"}) is None


def test_a_retried_save_counts_every_event_once() -> None:
    broker = InMemoryBroker()
    events = feed(broker)
    parts = in_memory_parts(SETTINGS, broker)
    parts = Parts(parts.source, parts.sink, FlakyStore(failures=2), parts.model_store)
    registry = CollectorRegistry()
    drain(build_processor(SETTINGS, parts, registry=registry, sleep=lambda s: None))
    processed = sum(
        registry.get_sample_value("segstream_events_processed_total", {"type": t}) or 0
        for t in EVENT_TYPES
    )
    consumed = sum(
        registry.get_sample_value(
            "segstream_events_consumed_total", {"topic": SETTINGS.input_topic, "type": t}
        )
        or 0
        for t in EVENT_TYPES
    )
    assert processed == consumed == len(events)


def test_an_event_whose_processing_raises_is_dead_lettered_and_the_rest_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broker = InMemoryBroker()
    events = feed(broker)
    poison = events[len(events) // 2]
    real_digest = event_columns_step.event_digest

    def digest(event_id: str) -> int:
        if event_id == poison["event_id"]:
            raise struct.error("simulated bug")
        return real_digest(event_id)

    monkeypatch.setattr(event_columns_step, "event_digest", digest)
    parts = in_memory_parts(SETTINGS, broker)
    drain(build_processor(SETTINGS, parts))
    dead = [json.loads(r.value) for r in broker.records(SETTINGS.dlq_topic)]
    assert [(d["reason"], d["detail"].split()[0]) for d in dead] == [("processing_error", "error")]
    assert json.loads(base64.b64decode(dead[0]["value_base64"])) == poison
    others = [e for e in events if e is not poison]
    got = {u: features_only(unpack_state(b)) for u, b in stored_users(parts).items()}
    assert got == {u: features_only(s) for u, s in expected_states(others).items()}


def test_a_dead_letter_too_big_for_its_topic_describes_the_original() -> None:
    settings = Settings(max_message_bytes=1000, dlq_max_bytes=4096)
    broker = InMemoryBroker()
    huge = b'{"pad":"' + b"x" * 20_000 + b'"}'
    broker.append(settings.input_topic, b"u1", huge)
    drain(build_processor(settings, in_memory_parts(settings, broker)))
    (record,) = broker.records(settings.dlq_topic)
    assert len(record.value) <= 4096
    dead = json.loads(record.value)
    assert dead["reason"] == "oversized" and dead["value_base64"] is None
    assert dead["value_bytes"] == len(huge)
    assert dead["value_sha256"] == hashlib.sha256(huge).hexdigest()
    assert huge.startswith(base64.b64decode(dead["value_prefix_base64"]))
    assert (dead["topic"], dead["offset"]) == (settings.input_topic, 0)


def test_a_runaway_clock_is_dead_lettered_and_moves_no_watermark() -> None:
    broker = InMemoryBroker()
    now_ms = 1_800_000_000_000
    early = {"event_id": "a1", "user_id": "alice", "type": "view", "ts": now_ms - 60_000}
    runaway = {"event_id": "b1", "user_id": "bob", "type": "view", "ts": 4_000_000_000_000}
    later = {"event_id": "c1", "user_id": "carol", "type": "view", "ts": now_ms - 30_000}
    for event in (early, runaway, later):
        broker.append(SETTINGS.input_topic, *encode(event), timestamp_ms=now_ms)

    class Clock:
        def time_s(self) -> float:
            return now_ms / 1000

    parts = in_memory_parts(SETTINGS, broker)
    drain(build_processor(SETTINGS, parts, clock=Clock()))
    (dead,) = [json.loads(r.value) for r in broker.records(SETTINGS.dlq_topic)]
    assert dead["reason"] == "future_timestamp"
    assert set(stored_users(parts)) == {"alice", "carol"}
    assert broker.records(SETTINGS.late_topic) == []


def test_lost_state_publishes_nothing_keeps_the_model_and_stops() -> None:
    broker = InMemoryBroker()
    feed(broker)
    parts = in_memory_parts(SETTINGS, broker)
    processor = build_processor(SETTINGS, parts)
    processor.run_once()
    while processor.snapshot is None:
        assert processor.run_once()
    version = processor.snapshot.version

    def kinds() -> Counter[str]:
        return Counter(json.loads(r.value)["kind"] for r in broker.records(SETTINGS.output_topic))

    published = kinds()
    assert isinstance(parts.state_store, InMemoryStateStore)
    parts.state_store.lose_everything()
    assert isinstance(parts.model_store, InMemoryModelStore)
    parts.model_store._snapshot = None  # Redis held the model too
    for event in generate_events(5, seed=11, days=2):
        broker.append(SETTINGS.input_topic, *encode(event))
    with pytest.raises(StateLost):
        drain(processor)
    assert not processor.healthy(stale_after_s=60)
    # Nothing from the empty state, only the model, republished under a higher version.
    assert kinds() - published == Counter({"model_republished": 1})
    stored = parts.model_store.load_snapshot()
    assert stored is not None and stored.version == version + 1
    assert stored.centers == processor.snapshot.centers


def test_before_the_first_model_only_rule_tags_change_and_users_are_placed_once_one_comes() -> None:
    """No segment model yet (training off, nothing published): users get no segment and the
    predictive tags are not ready, but a rule tag holds on features alone, so entering ``vip``
    publishes a change with no segment (``segment_after`` null, model version 0) and its
    membership record. Nothing else is published until a model comes."""
    settings = Settings(training=False, max_batch_records=100)
    broker = InMemoryBroker()
    day = 86_400_000
    start = 1_767_225_600_000
    events = [
        {"event_id": f"v{n}", "user_id": "u-view", "type": "view", "ts": start + n * day}
        for n in range(3)
    ] + [
        {
            "event_id": "big",
            "user_id": "u-vip",
            "type": "purchase",
            "ts": start + day,
            "amount": 1500.0,
        }
    ]
    for event in events:
        broker.append(settings.input_topic, *encode(event))
    parts = in_memory_parts(settings, broker)
    processor = build_processor(settings, parts, registry=CollectorRegistry())
    drain(processor)

    assert processor.snapshot is None
    changes = [json.loads(r.value) for r in broker.records(settings.output_topic)]
    assert [(c["kind"], c["user_id"]) for c in changes] == [("user_changed", "u-vip")]
    (vip,) = changes
    assert vip["segment_before"] is None and vip["segment_after"] is None
    assert vip["tags"] == ["vip"] and vip["tags_added"] == {"vip": None}
    assert vip["model_version"] == 0 and vip["segment_name"] is None
    membership = [json.loads(r.value) for r in broker.records(settings.membership_topic)]
    assert [(m["user_id"], m["segment"], m["tags"]) for m in membership] == [
        ("u-vip", None, ["vip"])
    ]
    stored = {u: unpack_state(b) for u, b in stored_users(parts).items()}
    assert {u: s.segment for u, s in stored.items()} == {"u-view": -1, "u-vip": -1}
