"""The Kafka twin: an in-memory broker of partitioned topics, with its event source and sink.

It keeps what the loop relies on: per-partition order, keys mapped to partitions by a stable
hash, consumer-group assignment with seek-on-assign, and acknowledged sends on flush.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Collection, Mapping

from stream.errors import AssignmentFailed
from stream.ports import AssignmentListener, Committed, Partition, Record

_DROPPED: tuple[bytes | None, bytes | None, int] = (None, None, 0)  # a record not held


class InMemoryBroker:
    """Topics of partitioned, append-only logs shared by sources and sinks."""

    def __init__(
        self, partitions: int = 4, keep: Callable[[str, bytes | None], bool] | None = None
    ) -> None:
        """``keep(topic, value)``: whether to hold a record appended (all by default). One
        not held keeps its offset and reads as an empty tombstone: a replay that reads a few
        of its outputs need not hold millions of them."""
        self.partitions = partitions
        self._keep = keep
        # Each partition's log as (key, value, timestamp) tuples, not Records: tuples of bytes
        # and ints are not tracked by the garbage collector, and a log that holds every record
        # would make each full collection walk them all.
        self.logs: dict[Partition, list[tuple[bytes | None, bytes | None, int]]] = {}
        self.commits: dict[Partition, Committed] = {}  # one consumer group's
        # One Partition per (topic, index), shared by its records (as a real source does), so
        # grouping a batch by partition compares identities, not fields.
        self._partitions: dict[tuple[str, int], Partition] = {}

    def create_topic(self, topic: str) -> None:
        if (topic, 0) in self._partitions:  # every append asks: keep it cheap
            return
        for index in range(self.partitions):
            partition = self._partitions[topic, index] = Partition(topic, index)
            self.logs.setdefault(partition, [])

    def append(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        timestamp_ms: int = 0,
        partition: int | None = None,
    ) -> Record:
        self.create_topic(topic)
        # crc32, not hash(): the same key lands in the same partition in every process.
        index = zlib.crc32(key) % self.partitions if key is not None else 0
        index = index if partition is None else partition
        where = self._partitions[topic, index]
        log = self.logs[where]
        if value is not None:
            # A copy of exactly its size: orjson's output keeps the 4 KB buffer it was written
            # into, which a log that holds every record would hold too (8x the memory).
            value = bytes(memoryview(value))
        if self._keep is None or self._keep(topic, value):
            log.append((key, value, timestamp_ms))
        else:
            log.append(_DROPPED)
        return Record(where, len(log) - 1, key, value, timestamp_ms)

    def read(self, partition: Partition, start: int = 0, count: int | None = None) -> list[Record]:
        """The partition's records from offset ``start`` on (``count`` at most)."""
        log = self.logs.get(partition, [])
        end = len(log) if count is None else start + count
        return [
            Record(partition, offset, key, value, at)
            for offset, (key, value, at) in enumerate(log[start:end], start)
        ]

    def records(self, topic: str) -> list[Record]:
        return [r for p in sorted(self.logs) if p.topic == topic for r in self.read(p)]

    def end_offsets(self, topic: str) -> dict[Partition, int]:
        return {p: len(log) for p, log in self.logs.items() if p.topic == topic}


class InMemoryEventSource:
    """A group of one consumer: it owns every partition of its topic."""

    def __init__(self, broker: InMemoryBroker, topic: str) -> None:
        self.broker = broker
        self.topic = topic
        self._positions: dict[Partition, int] = {}
        self._paused: set[Partition] = set()
        self._listener: AssignmentListener | None = None

    def subscribe(self, listener: AssignmentListener) -> None:
        self._listener = listener

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if self._listener is None:
            raise RuntimeError("subscribe() before poll()")
        self.broker.create_topic(self.topic)
        if not self._positions:
            assigned = sorted(self.broker.end_offsets(self.topic))
            try:
                resume = self._listener.assigned(assigned)
            except Exception as exc:
                raise AssignmentFailed(f"partition assignment failed: {exc}") from exc
            for partition in assigned:
                start = resume.get(partition)
                self._positions[partition] = start if start is not None else 0
        # Like a Kafka fetch, share the batch between partitions instead of draining one first.
        batch: list[Record] = []
        share = -(-max_records // max(len(self._positions), 1))
        for partition, position in sorted(self._positions.items()):
            if partition in self._paused:
                continue
            room = min(share, max_records - len(batch))
            taken = self.broker.read(partition, position, room)
            batch.extend(taken)
            self._positions[partition] = position + len(taken)
        return batch

    def pause(self, partitions: Collection[Partition]) -> None:
        self._paused.update(partitions)

    def commit(
        self, next_offsets: Mapping[Partition, int], metadata: Mapping[Partition, str] | None = None
    ) -> bool:
        notes = metadata or {}
        for partition, offset in next_offsets.items():
            self.broker.commits[partition] = Committed(offset, notes.get(partition, ""))
        return True

    def committed(self) -> dict[Partition, Committed]:
        return {p: c for p, c in self.broker.commits.items() if p.topic == self.topic}

    def lag(self) -> dict[Partition, int]:
        ends = self.broker.end_offsets(self.topic)
        return {p: ends[p] - pos for p, pos in self._positions.items()}

    def close(self) -> None:
        if self._listener is not None and self._positions:
            self._listener.revoked(list(self._positions))
        self._positions.clear()


class InMemorySink:
    def __init__(self, broker: InMemoryBroker) -> None:
        self.broker = broker
        self._pending: list[tuple[str, bytes | None, bytes | None, int | None]] = []

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        if partition is not None and not 0 <= partition < self.broker.partitions:
            raise ValueError(f"{topic} has no partition {partition}")
        self._pending.append((topic, key, value, partition))

    def partitions(self, topic: str) -> int:
        return self.broker.partitions

    def flush(self) -> None:
        for topic, key, value, partition in self._pending:
            self.broker.append(topic, key, value, partition=partition)
        self._pending.clear()

    def close(self) -> None:
        self.flush()
