"""The Redis state store's twin: users, due index, offsets and labels in dicts, with the real
store's fenced, atomic saves (a save from a consumer that lost the partition is refused)."""

from __future__ import annotations

import heapq
import uuid
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field

from operators.record import with_next_due
from stream.errors import PartitionLost, StateLost
from stream.ports import Partition, PartitionWrite


class DueIndex:
    """Users by due time, read in Redis's ZRANGEBYSCORE order (time, then user id) at a cost
    that grows with the users returned, not with all users: a dict of each user's due time and
    a heap of (time, user) entries, where an entry the dict no longer agrees with is dropped
    when it reaches the top. The entries a read returns leave the heap until the next read:
    a batch re-schedules (or removes) almost every user it was handed, so most never return."""

    def __init__(self) -> None:
        self._at: dict[str, int] = {}
        self._heap: list[tuple[int, str]] = []
        self._handed: dict[str, int] = {}  # returned by the last read, out of the heap

    def __contains__(self, user: object) -> bool:
        return user in self._at

    def __len__(self) -> int:
        return len(self._at)

    def __iter__(self) -> Iterator[str]:
        return iter(self._at)

    def set(self, user: str, at_ms: int) -> None:
        self.update({user: at_ms})

    def update(self, dues: Mapping[str, int]) -> None:
        """Each user's due time (0: not due, ever: out of the index), as a save writes them."""
        at, handed, entries = self._at, self._handed, []
        for user, due in dues.items():
            if handed.pop(user, None) is not None:
                del at[user]  # its entry left the heap: a new one goes in below
            if not due:
                at.pop(user, None)  # its heap entry goes stale
            elif at.get(user) != due:
                at[user] = due
                entries.append((due, user))
        heap = self._heap
        if len(heap) + len(entries) > 2 * len(at) + 1024:  # bound the stale entries
            self._heap = [(due, user) for user, due in at.items() if user not in handed]
            heapq.heapify(self._heap)
        elif len(entries) > len(heap) // 8:  # many at once: one linear heapify beats pushes
            heap += entries
            heapq.heapify(heap)
        else:
            for entry in entries:
                heapq.heappush(heap, entry)

    def pop(self, user: str) -> None:
        self.update({user: 0})

    def due(self, until_ms: int, limit: int) -> list[str]:
        """The first ``limit`` users due at or before ``until_ms``, in order."""
        heap = self._heap
        for user, at in self._handed.items():  # not re-scheduled since: due as before
            heapq.heappush(heap, (at, user))
        self._handed = {}
        while heap and len(self._handed) < limit and heap[0][0] <= until_ms:
            at, user = heapq.heappop(heap)
            if self._at.get(user) == at and user not in self._handed:
                self._handed[user] = at
        return list(self._handed)


@dataclass
class _PartitionData:
    owner: str = ""
    next_offset: int | None = None
    users: dict[str, bytes] = field(default_factory=dict)
    dues: DueIndex = field(default_factory=DueIndex)
    watermark_ms: int = 0
    segment_sizes: dict[int, int] = field(default_factory=dict)
    pending: dict[str, bytes] = field(default_factory=dict)
    erasures: list[bytes] = field(default_factory=list)


class InMemoryStateStore:
    """State and offsets in dicts; handles from ``handle()`` share them like Redis clients do."""

    def __init__(self, shared: dict[Partition, _PartitionData] | None = None) -> None:
        self._data: dict[Partition, _PartitionData] = {} if shared is None else shared
        self._tokens: dict[Partition, str] = {}
        self._saved: dict[Partition, int] = {}  # the offset we last saw stored

    def handle(self) -> InMemoryStateStore:
        """Another client of the same store: a second consumer in tests."""
        return InMemoryStateStore(self._data)

    def claim(self, partition: Partition) -> int | None:
        token = uuid.uuid4().hex
        data = self._data.setdefault(partition, _PartitionData())
        data.owner = token
        self._tokens[partition] = token
        if data.next_offset is None:
            self._saved.pop(partition, None)
        else:
            self._saved[partition] = data.next_offset
        return data.next_offset

    def lose_everything(self) -> None:
        """What a Redis restart without persistence does, for tests."""
        self._data.clear()

    def _check(self, partition: Partition) -> str | None:
        """None if we own the partition; else "lost" (our claim vanished) or "taken"."""
        if partition not in self._tokens:
            return "taken"  # never claimed by us
        data = self._data.get(partition)
        saved = self._saved.get(partition)
        if (
            data is None
            or not data.owner
            or (saved is not None and (data.next_offset is None or data.next_offset < saved))
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
                data.users.pop(user, None)
                data.pending.pop(user, None)
            data.dues.update(dict.fromkeys(write.deleted, 0))
            data.users.update(write.users)
            for user, due in write.dues.items():  # re-scored, nothing else moved: in place
                if user not in write.users and user in data.users:
                    data.users[user] = with_next_due(data.users[user], due)
            data.erasures += write.audit
            data.dues.update(write.dues)
            data.watermark_ms = write.watermark_ms
            for user, packed in write.pending.items():
                if packed:
                    data.pending[user] = packed
                else:
                    data.pending.pop(user, None)
            for segment, delta in write.segment_deltas.items():
                data.segment_sizes[segment] = data.segment_sizes.get(segment, 0) + delta
            data.next_offset = write.next_offset
            self._saved[partition] = write.next_offset
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
        data = self._data.get(partition)
        return [] if data is None else data.dues.due(until_ms, limit)

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
