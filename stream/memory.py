"""In-memory twins of the ports (the model store's: ``stream.memory_models``), for unit tests
and the embedded demo. Not for production.

They keep the real parts' semantics that the loop relies on: per-partition order, keys mapped
to partitions by a stable hash, seek-on-assign, and fenced atomic saves.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from stream.errors import AssignmentFailed, PartitionLost, StateLost
from stream.ports import AssignmentListener, Committed, Partition, PartitionWrite, Record


class InMemoryBroker:
    """Topics of partitioned, append-only logs shared by sources and sinks."""

    def __init__(self, partitions: int = 4) -> None:
        self.partitions = partitions
        self.logs: dict[Partition, list[Record]] = {}
        self.commits: dict[Partition, Committed] = {}  # one consumer group's

    def create_topic(self, topic: str) -> None:
        if Partition(topic, 0) in self.logs:  # every append asks: keep it cheap
            return
        for index in range(self.partitions):
            self.logs.setdefault(Partition(topic, index), [])

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
        log = self.logs[Partition(topic, index)]
        record = Record(Partition(topic, index), len(log), key, value, timestamp_ms)
        log.append(record)
        return record

    def records(self, topic: str) -> list[Record]:
        return [r for p, log in sorted(self.logs.items()) if p.topic == topic for r in log]

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
            taken = self.broker.logs[partition][position : position + room]
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


@dataclass
class _PartitionData:
    owner: str = ""
    next_offset: int | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    dues: dict[str, int] = field(default_factory=dict)
    watermark_ms: int = 0
    segment_sizes: dict[int, int] = field(default_factory=dict)
    pending: dict[str, bytes] = field(default_factory=dict)
    erasures: list[bytes] = field(default_factory=list)


class InMemoryStateStore:
    """State and offsets in dicts; handles from ``handle()`` share them like Redis clients do."""

    def __init__(self, shared: dict[Partition, _PartitionData] | None = None) -> None:
        self._data: dict[Partition, _PartitionData] = {} if shared is None else shared
        self._tokens: dict[Partition, str] = {}
        self._has_offset: set[Partition] = set()

    def handle(self) -> InMemoryStateStore:
        """Another client of the same store: a second consumer in tests."""
        return InMemoryStateStore(self._data)

    def claim(self, partition: Partition) -> int | None:
        token = uuid.uuid4().hex
        data = self._data.setdefault(partition, _PartitionData())
        data.owner = token
        self._tokens[partition] = token
        if data.next_offset is None:
            self._has_offset.discard(partition)
        else:
            self._has_offset.add(partition)
        return data.next_offset

    def lose_everything(self) -> None:
        """What a Redis restart without persistence does, for tests."""
        self._data.clear()

    def _check(self, partition: Partition) -> str | None:
        """None if we own the partition; else "lost" (our claim vanished) or "taken"."""
        if partition not in self._tokens:
            return "taken"  # never claimed by us
        data = self._data.get(partition)
        if (
            data is None
            or not data.owner
            or (data.next_offset is None and partition in self._has_offset)
        ):
            return "lost"
        return None if data.owner == self._tokens.get(partition) else "taken"

    def load(self, users: Mapping[Partition, Collection[str]]) -> dict[Partition, dict[str, bytes]]:
        found: dict[Partition, dict[str, bytes]] = {}
        checks = {p: self._check(p) for p in users}
        if lost := [p for p, check in checks.items() if check == "lost"]:
            raise StateLost(lost)
        if taken := [p for p, check in checks.items() if check == "taken"]:
            raise PartitionLost(taken)
        for partition, names in users.items():
            stored = self._data.get(partition, _PartitionData()).users
            found[partition] = {u: stored[u] for u in names if u in stored}
        return found

    def save(self, writes: Mapping[Partition, PartitionWrite]) -> None:
        lost: list[Partition] = []
        taken: list[Partition] = []
        for partition, write in writes.items():
            check = self._check(partition)
            if check is not None:
                (lost if check == "lost" else taken).append(partition)
                continue
            data = self._data[partition]
            if data.next_offset is not None and data.next_offset > write.first_offset:
                continue  # applied before: a retry after a partial save
            for user in write.deleted:  # first: a user back in the same batch keeps the rest
                for stored in (data.users, data.dues, data.pending):
                    stored.pop(user, None)
            data.users.update(write.users)
            data.erasures += write.audit
            for user, due in write.dues.items():
                if due:
                    data.dues[user] = due
                else:
                    data.dues.pop(user, None)
            data.watermark_ms = write.watermark_ms
            for user, packed in write.pending.items():
                if packed:
                    data.pending[user] = packed
                else:
                    data.pending.pop(user, None)
            for segment, delta in write.segment_deltas.items():
                data.segment_sizes[segment] = data.segment_sizes.get(segment, 0) + delta
            data.next_offset = write.next_offset
            self._has_offset.add(partition)
        if lost:
            raise StateLost(lost)
        if taken:
            raise PartitionLost(taken)

    def next_offset(self, partition: Partition) -> int | None:
        return self._data.get(partition, _PartitionData()).next_offset

    def watermark(self, partition: Partition) -> int:
        return self._data.get(partition, _PartitionData()).watermark_ms

    def load_pending(
        self,
        users: Mapping[Partition, Collection[str]],
    ) -> dict[Partition, dict[str, bytes]]:
        found: dict[Partition, dict[str, bytes]] = {}
        for partition, names in users.items():
            stored = self._data.get(partition, _PartitionData()).pending
            found[partition] = {u: stored[u] for u in names if u in stored}
        return found

    def segment_sizes(self, partitions: Collection[Partition]) -> dict[int, int]:
        sizes: dict[int, int] = {}
        for partition in partitions:
            for segment, size in self._data.get(partition, _PartitionData()).segment_sizes.items():
                sizes[segment] = sizes.get(segment, 0) + size
        return {s: n for s, n in sizes.items() if n}

    def erasures(self, partition: Partition) -> list[bytes]:
        return list(self._data.get(partition, _PartitionData()).erasures)

    def due_users(self, partition: Partition, until_ms: int, limit: int) -> list[str]:
        dues = self._data.get(partition, _PartitionData()).dues
        due = sorted((at, user) for user, at in dues.items() if at <= until_ms)
        return [user for _, user in due[:limit]]

    def scan_users(
        self, partition: Partition, cursor: int, count: int
    ) -> tuple[int, dict[str, bytes]]:
        users = sorted(self._data.get(partition, _PartitionData()).users.items())
        chunk = users[cursor : cursor + count]
        following = cursor + count if cursor + count < len(users) else 0
        return following, dict(chunk)

    def users(self) -> dict[str, bytes]:
        """Every stored user record, for the demo's summary."""
        return {u: v for data in self._data.values() for u, v in data.users.items()}

    def close(self) -> None:
        pass
