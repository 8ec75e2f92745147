"""One behaviour suite for every EventSource + Sink pair: in-memory and Kafka."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass

import pytest
from kafka.partitioner.default import murmur2

from stream.ports import Committed, EventSource, Partition, Record, Sink
from stream.settings import Settings
from stream.twins.broker import InMemoryBroker, InMemoryEventSource, InMemorySink
from stream.wiring import kafka_sink, kafka_source
from tests.support.servers import KAFKA_BOOTSTRAP, create_topics, unique


class Listener:
    def __init__(self, resume: Mapping[int, int] | None = None) -> None:
        self.resume = resume or {}
        self.assigned_partitions: list[Partition] = []
        self.revoked_partitions: list[Partition] = []

    def assigned(self, partitions: Collection[Partition]) -> dict[Partition, int | None]:
        self.assigned_partitions.extend(partitions)
        return {p: self.resume.get(p.index) for p in partitions}

    def revoked(self, partitions: Collection[Partition]) -> None:
        self.revoked_partitions.extend(partitions)


@dataclass
class Backend:
    topic: str
    sink: Sink
    new_source: Callable[[], EventSource]


@pytest.fixture(
    params=[
        "memory",
        pytest.param("confluent-kafka", marks=pytest.mark.kafka),
        pytest.param("kafka-python", marks=pytest.mark.kafka),
    ]
)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The twin, and the real broker through each supported client."""
    topic = unique("contract")
    if request.param == "memory":
        broker = InMemoryBroker(partitions=4)
        broker.create_topic(topic)
        yield Backend(topic, InMemorySink(broker), lambda: InMemoryEventSource(broker, topic))
        return
    create_topics(topic, partitions=4)

    def settings() -> Settings:
        return Settings(
            kafka_bootstrap=KAFKA_BOOTSTRAP,
            kafka_client=request.param,
            input_topic=topic,
            group=unique("group"),
            session_timeout_ms=6000,
        )

    sink = kafka_sink(settings())
    yield Backend(topic, sink, lambda: kafka_source(settings()))
    sink.close()


def poll_until(source: EventSource, count: int, timeout_s: float = 30) -> list[Record]:
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        records.extend(source.poll(500, 0.2))
    return records


def produce(backend: Backend, n: int, keys: int = 7) -> None:
    for i in range(n):
        backend.sink.send(backend.topic, f"k{i % keys}".encode(), f"v{i}".encode())
    backend.sink.flush()


def test_delivers_every_record_once_in_order_per_key(backend: Backend) -> None:
    produce(backend, 200)
    source = backend.new_source()
    listener = Listener()
    source.subscribe(listener)
    records = poll_until(source, 200)
    assert len(records) == 200
    assert sorted({p.index for p in listener.assigned_partitions}) == [0, 1, 2, 3]
    by_key: dict[bytes | None, list[int]] = {}
    for record in records:
        by_key.setdefault(record.key, []).append(int(record.value[1:]))
        assert record.partition.topic == backend.topic
    for values in by_key.values():
        assert values == sorted(values)  # one key, one partition: production order
    assert len({r.partition for r in records if r.key == b"k1"}) == 1
    source.close()


@pytest.mark.kafka
@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python"])
def test_kafka_clients_place_keys_as_java_clients_do(client: str) -> None:
    """Both clients use Java's murmur2 partitioner, so a user's records land in one partition
    whichever client wrote them (the compacted membership topic relies on it)."""
    topic = unique("partitioner")
    create_topics(topic, partitions=4)
    settings = Settings(
        kafka_bootstrap=KAFKA_BOOTSTRAP,
        kafka_client=client,
        input_topic=topic,
        group=unique("group"),
        session_timeout_ms=6000,
    )
    sink = kafka_sink(settings)
    for i in range(60):
        sink.send(topic, f"user-{i}".encode(), b"v")
    sink.flush()
    sink.close()
    source = kafka_source(settings)
    source.subscribe(Listener())
    records = poll_until(source, 60)
    source.close()
    assert len(records) == 60
    for record in records:
        assert record.key is not None
        assert record.partition.index == (murmur2(record.key) & 0x7FFFFFFF) % 4, record.key


def test_resumes_where_the_listener_says(backend: Backend) -> None:
    produce(backend, 100)
    first = backend.new_source()
    first.subscribe(Listener())
    records = poll_until(first, 100)
    first.close()
    resume = {}
    for record in records:
        resume.setdefault(record.partition.index, record.offset)  # first offset...
    ends = {p: max(r.offset for r in records if r.partition.index == p) + 1 for p in resume}
    resume = {p: min(resume[p] + 3, ends[p]) for p in resume}  # ...skip three per partition
    second = backend.new_source()
    second.subscribe(Listener(resume))
    expected = sum(ends[p] - resume[p] for p in resume)
    again = poll_until(second, expected, timeout_s=30)
    assert len(again) == expected
    assert all(r.offset >= resume[r.partition.index] for r in again)
    lag = second.lag()
    assert set(lag) <= {Partition(backend.topic, p) for p in range(4)}
    assert all(v == 0 for v in lag.values())
    second.close()


def test_commit_accepts_next_offsets(backend: Backend) -> None:
    produce(backend, 10)
    source = backend.new_source()
    source.subscribe(Listener())
    records = poll_until(source, 10)
    nexts: dict[Partition, int] = {}
    for record in records:
        nexts[record.partition] = record.offset + 1
    assert source.commit(nexts)
    assert source.committed() == {p: Committed(o, "") for p, o in nexts.items()}
    source.close()


def test_commits_keep_their_note(backend: Backend) -> None:
    produce(backend, 10)
    source = backend.new_source()
    source.subscribe(Listener())
    records = poll_until(source, 10)
    nexts = {r.partition: r.offset + 1 for r in records}
    assert source.committed() == {}
    assert source.commit(nexts, {p: f"note {p.index}" for p in nexts})
    assert source.committed() == {p: Committed(o, f"note {p.index}") for p, o in nexts.items()}
    source.close()
