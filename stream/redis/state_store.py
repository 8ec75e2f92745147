"""User state and partition offsets in Redis (the models: ``stream.redis.model_store``).

Key layout (``{prefix}`` defaults to ``segstream``; the ``{topic-N}`` hash tag keeps one
partition's keys in one Redis Cluster slot, so each script touches one slot):

    {prefix}:{<topic>-<N>}:owner      token of the consumer allowed to write partition N
    {prefix}:{<topic>-<N>}:offset     next offset of partition N to process
    {prefix}:{<topic>-<N>}:watermark  the partition's event-time watermark (epoch ms)
    {prefix}:{<topic>-<N>}:buckets    how many record buckets the partition has (fixed)
    {prefix}:{<topic>-<N>}:b:<k>      hash, bucket k: user -> record (``operators.record``) in
                                      its compact form (``stream.redis.compact``)
    {prefix}:{<topic>-<N>}:l:<k>      hash: user -> open tag labels, for the sampled users of
                                      record buckets k*4 to k*4+3
    {prefix}:{<topic>-<N>}:due        sorted set: bucket -> a bound on its users' next
                                      re-scoring (at or before the earliest; exact once swept)
    {prefix}:{<topic>-<N>}:segments   hash: segment id -> users of partition N in it
    {prefix}:{<topic>-<N>}:erasures   list: the audit log of erasures applied (no user ids)
    {prefix}:{models}:...             the published models (``stream.redis.model_store``)

A user's bucket is the CRC-32 of their id modulo the partition's bucket count. Buckets of a few
dozen users are small hashes Redis keeps as one compact listpack (``docs/sizing.md``): a key
per user cost more than the record itself. Nothing expires in Redis: idle users are removed by
their consumer in event time (``SEGSTREAM_MAX_IDLE_DAYS``).
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import redis

from stream.errors import DependencyError, PartitionLost, StateLost
from stream.ports import Partition, PartitionWrite
from stream.redis.client import ERRORS, Client, run_script
from stream.redis.compact import DUE_AT, compact_many, expand, expand_many
from stream.redis.scripts import (
    CHUNK_SCRIPT,
    COMMIT_SCRIPT,
    DUE_SCRIPT,
    LABELS_SCRIPT,
    LOAD_SCRIPT,
    WAL_SCRIPT,
)

DEFAULT_BUCKETS = 16_384  # per partition (SEGSTREAM_REDIS_BUCKETS)
LABEL_SHARE = 4  # record buckets per label bucket (a quarter of the users are sampled)
DUE_RECORDS_READ = 4000  # about the most records one call of the due script reads (~2 ms)
CHUNK_USERS = 400  # the most users one load or save script reads or writes


def _chunks(names: list[str]) -> list[list[str]]:
    """``names`` in runs of at most ``CHUNK_USERS`` (one, possibly empty, if few)."""
    return [names[at : at + CHUNK_USERS] for at in range(0, max(len(names), 1), CHUNK_USERS)]


def bucket_of(user: str, buckets: int) -> int:
    """The record bucket of ``user`` in a partition of ``buckets`` buckets."""
    return zlib.crc32(user.encode()) % buckets


def total_sizes(replies: Iterable[Mapping[bytes, bytes]]) -> dict[int, int]:
    """Users per segment over the partitions' ``segments`` hashes (segments with any)."""
    sizes: dict[int, int] = {}
    for reply in replies:
        for segment, size in reply.items():
            sizes[int(segment)] = sizes.get(int(segment), 0) + int(size)
    return {s: n for s, n in sizes.items() if n}


Args = list[Any]  # a script's arguments
_LOG_MAGIC = b"SSW1"


def _log(first: int, runs: list[Args], tail: Args) -> bytes:
    """A batch's write-ahead log: the header the scripts check (``stream.redis.scripts``), then
    each run's arguments and the commit's, each item length-prefixed."""
    parts = [_LOG_MAGIC, first.to_bytes(8, "little", signed=True), len(runs).to_bytes(4, "little")]
    for args in [*runs, tail]:
        parts.append(len(args).to_bytes(4, "little"))
        for item in args:
            data = item if isinstance(item, bytes) else str(item).encode()
            parts += [len(data).to_bytes(4, "little"), data]
    return b"".join(parts)


def _unlog(log: bytes) -> tuple[int, list[Args], Args]:
    """The first offset, runs and commit arguments of a log (``_log``)."""
    if log[:4] != _LOG_MAGIC:
        raise DependencyError("redis: a partition's write-ahead log is not segstream's")
    first = int.from_bytes(log[4:12], "little", signed=True)
    at, lists = 16, []
    for _ in range(int.from_bytes(log[12:16], "little") + 1):
        count, at = int.from_bytes(log[at : at + 4], "little"), at + 4
        items: Args = []
        for _ in range(count):
            size, at = int.from_bytes(log[at : at + 4], "little"), at + 4
            items.append(log[at : at + size])
            at += size
        lists.append(items)
    return first, lists[:-1], lists[-1]


def _framed(items: list[bytes]) -> tuple[bytes, str]:
    """A list as one argument of the save script, and its items' byte sizes."""
    return b"".join(items), ",".join(map(str, map(len, items)))


class RedisStateStore:
    def __init__(
        self, client: Client, prefix: str = "segstream", buckets: int = DEFAULT_BUCKETS
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._new_buckets = buckets  # for a partition that has none yet
        self._buckets: dict[Partition, int] = {}  # each partition's, as stored
        self._tokens: dict[Partition, str] = {}
        # The offset each partition's store holds as far as we know: it must not vanish or go
        # back (a failover to a replica that missed our last writes).
        self._saved: dict[Partition, int] = {}
        self._wal = client.register_script(WAL_SCRIPT)
        self._chunk = client.register_script(CHUNK_SCRIPT)
        self._commit_script = client.register_script(COMMIT_SCRIPT)
        self._load = client.register_script(LOAD_SCRIPT)
        self._labels = client.register_script(LABELS_SCRIPT)
        self._due = client.register_script(DUE_SCRIPT)

    def key(self, partition: Partition, suffix: str) -> str:
        """The key of one of the partition's values (the layout above)."""
        return f"{self._prefix}:{{{partition.topic}-{partition.index}}}:{suffix}"

    def buckets(self, partition: Partition) -> int:
        """The partition's bucket count (stored at its first claim; this store's for a new
        partition)."""
        if partition not in self._buckets:
            try:
                stored = self._client.get(self.key(partition, "buckets"))
            except ERRORS as exc:
                raise DependencyError(f"redis: reading the buckets of {partition} failed") from exc
            self._buckets[partition] = self._new_buckets if stored is None else int(stored)
        return self._buckets[partition]

    def _in_buckets(self, partition: Partition, users: Iterable[str]) -> tuple[bytes, str, str]:
        """Users as a script argument: framed, and their buckets."""
        count = self.buckets(partition)
        encoded = [u.encode() for u in users]
        blob, sizes = _framed(encoded)
        return blob, sizes, ",".join(str(zlib.crc32(u) % count) for u in encoded)

    def claim(self, partition: Partition) -> int | None:
        token = uuid.uuid4().hex
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.set(self.key(partition, "owner"), token)
            pipe.get(self.key(partition, "offset"))
            pipe.set(self.key(partition, "buckets"), self._new_buckets, nx=True)
            pipe.get(self.key(partition, "buckets"))
            _, stored, _, buckets = pipe.execute()
        except ERRORS as exc:
            raise DependencyError(f"redis: claiming {partition} failed: {exc}") from exc
        self._tokens[partition] = token
        self._buckets[partition] = int(buckets)
        if self._finish_logged(partition):  # a batch its last writer logged, not committed
            stored = self.next_offset(partition)
        if stored is None:
            self._saved.pop(partition, None)
            return None
        self._saved[partition] = int(stored)
        return int(stored)

    def load(self, users: Mapping[Partition, Collection[str]]) -> dict[Partition, dict[str, bytes]]:
        """In scripts of at most ``CHUNK_USERS`` users, so a point read never waits long behind
        one; each also reads the owner token and offset, and all of them are checked."""
        order = [(p, chunk) for p, names in users.items() for chunk in _chunks(list(names))]
        try:
            pipe = self._client.pipeline(transaction=False)
            for partition, names in order:
                run_script(
                    self._load,
                    [self.key(partition, "owner"), self.key(partition, "offset")],
                    [self.key(partition, "b:"), *self._in_buckets(partition, names)],
                    pipe,
                )
            replies: list[Any] = pipe.execute()
        except ERRORS as exc:
            raise DependencyError(f"redis: loading user state failed: {exc}") from exc
        found: dict[Partition, dict[str, bytes]] = {p: {} for p in users}
        lost: set[Partition] = set()
        taken: set[Partition] = set()
        for (partition, names), (owner, offset, *values) in zip(order, replies, strict=True):
            saved = self._saved.get(partition)
            if owner is None or (saved is not None and (offset is None or int(offset) < saved)):
                lost.add(partition)
            elif owner.decode() != self._tokens.get(partition):
                taken.add(partition)
            present = [(u, v) for u, v in zip(names, values, strict=True) if v is not None]
            records = expand_many([v for _, v in present])
            found[partition].update(zip([u for u, _ in present], records, strict=True))
        if lost:
            raise StateLost(lost)
        if taken:
            raise PartitionLost(taken - lost)
        return found

    def save(self, writes: Mapping[Partition, PartitionWrite]) -> None:
        """Each partition's batch through its write-ahead log, in runs of at most
        ``CHUNK_USERS`` users, then committed (``stream.redis.scripts``): two round trips."""
        lost = [p for p in writes if p not in self._tokens]
        order = [(p, w) for p, w in writes.items() if p in self._tokens]
        plans = {p: self._plan(p, w) for p, w in order}
        try:
            pipe = self._client.pipeline(transaction=False)
            for partition, write in order:
                token, (runs, tail) = self._tokens[partition], plans[partition]
                log = _log(write.first_offset, runs, tail)
                expected = self._saved.get(partition, "")
                keys = [self.key(partition, s) for s in ("owner", "offset", "wal")]
                run_script(self._wal, keys, [token, write.first_offset, expected, log], pipe)
                keys = [self.key(partition, s) for s in ("owner", "wal", "due")]
                for run in runs:
                    run_script(self._chunk, keys, [token, write.first_offset, *run], pipe)
            replies = iter(pipe.execute(raise_on_error=False))
        except ERRORS as exc:
            raise DependencyError(f"redis: saving state failed: {exc}") from exc
        vanished: list[Partition] = []
        logged: list[Partition] = []
        for partition, _ in order:
            first, *rest = [next(replies) for _ in range(1 + len(plans[partition][0]))]
            failed = [r for r in (first, *rest) if isinstance(r, redis.ResponseError)]
            if failed and str(failed[0]).startswith(("FENCED", "LOST")):
                (lost if str(failed[0]).startswith("FENCED") else vanished).append(partition)
                self._tokens.pop(partition, None)
            elif failed:
                raise DependencyError(f"redis: saving {partition} failed: {failed[0]}")
            elif first == 1:
                logged.append(partition)
        self._commit({p: writes[p] for p in logged}, plans)
        for partition, write in order:
            if partition in self._tokens:
                self._saved[partition] = write.next_offset
        if vanished:
            raise StateLost(vanished)
        if lost:
            raise PartitionLost(lost)

    def _plan(self, partition: Partition, write: PartitionWrite) -> tuple[list[Args], Args]:
        """The batch as the chunk scripts' runs (after the token and first offset), each a few
        hundred users with all of their changes, and the commit's arguments after those two."""
        users = write.users
        patched = {u: due for u, due in write.dues.items() if u not in users}
        touched = list(dict.fromkeys([*write.deleted, *write.pending, *users, *patched]))
        run_of = {u: i // CHUNK_USERS for i, u in enumerate(touched)}
        count = max(1, -(-len(touched) // CHUNK_USERS))
        removed: list[list[str]] = [[] for _ in range(count)]
        labeled: list[list[str]] = [[] for _ in range(count)]
        written: list[list[str]] = [[] for _ in range(count)]
        kept: list[list[str]] = [[] for _ in range(count)]
        for lists, names in ((removed, write.deleted), (labeled, write.pending)):
            for user in names:
                lists[run_of[user]].append(user)
        for lists, names in ((written, users), (kept, patched)):
            for user in names:
                lists[run_of[user]].append(user)
        compact = dict(zip(users, compact_many(list(users.values())), strict=True))
        runs: list[Args] = []
        for run in range(count):
            runs.append(
                [
                    self.key(partition, "b:"),
                    self.key(partition, "l:"),
                    LABEL_SHARE,
                    DUE_AT,
                    *self._in_buckets(partition, removed[run]),
                    *_framed([u.encode() for u in labeled[run]]),
                    *_framed([write.pending[u] for u in labeled[run]]),
                    self._in_buckets(partition, labeled[run])[2],
                    *_framed([u.encode() for u in written[run]]),
                    *_framed([compact[u] for u in written[run]]),
                    self._in_buckets(partition, written[run])[2],
                    *self._in_buckets(partition, kept[run]),
                    b"".join(patched[u].to_bytes(8, "little", signed=True) for u in kept[run]),
                ]
            )
        deltas = [n for pair in write.segment_deltas.items() for n in pair]
        tail: Args = [
            write.next_offset,
            write.watermark_ms,
            ",".join(map(str, deltas)),
            *_framed(list(write.audit)),
        ]
        return runs, tail

    def _commit(
        self,
        writes: Mapping[Partition, PartitionWrite],
        plans: Mapping[Partition, tuple[list[Args], Args]],
    ) -> None:
        """Step 3 for the partitions whose batch is logged and applied."""
        if not writes:
            return
        try:
            pipe = self._client.pipeline(transaction=False)
            for partition, write in writes.items():
                suffixes = ("owner", "offset", "watermark", "segments", "erasures", "wal")
                keys = [self.key(partition, s) for s in suffixes]
                args = [self._tokens[partition], write.first_offset, *plans[partition][1]]
                run_script(self._commit_script, keys, args, pipe)
            replies = pipe.execute(raise_on_error=False)
        except ERRORS as exc:
            raise DependencyError(f"redis: committing saved state failed: {exc}") from exc
        for partition, reply in zip(writes, replies, strict=True):
            if isinstance(reply, redis.ResponseError):
                if str(reply).startswith("FENCED"):
                    raise PartitionLost([partition])
                if str(reply).startswith("LOST"):
                    raise StateLost([partition])
                raise DependencyError(f"redis: committing {partition} failed: {reply}")

    def _finish_logged(self, partition: Partition) -> bool:
        """Steps 2 and 3 again from a log a writer left (it died between steps); whether
        there was one."""
        try:
            log: Any = self._client.get(self.key(partition, "wal"))
        except ERRORS as exc:
            raise DependencyError(f"redis: reading the log of {partition} failed") from exc
        if log is None:
            return False
        first, runs, tail = _unlog(log)
        token = self._tokens[partition]
        try:
            pipe = self._client.pipeline(transaction=False)
            keys = [self.key(partition, s) for s in ("owner", "wal", "due")]
            for run in runs:
                run_script(self._chunk, keys, [token, first, *run], pipe)
            suffixes = ("owner", "offset", "watermark", "segments", "erasures", "wal")
            keys = [self.key(partition, s) for s in suffixes]
            run_script(self._commit_script, keys, [token, first, *tail], pipe)
            pipe.execute()
        except ERRORS as exc:
            raise DependencyError(
                f"redis: finishing the logged batch of {partition}: {exc}"
            ) from exc
        return True

    def next_offset(self, partition: Partition) -> int | None:
        try:
            stored = self._client.get(self.key(partition, "offset"))
        except ERRORS as exc:
            raise DependencyError(f"redis: reading the offset of {partition} failed") from exc
        return None if stored is None else int(stored)

    def watermark(self, partition: Partition) -> int:
        try:
            stored = self._client.get(self.key(partition, "watermark"))
        except ERRORS as exc:
            raise DependencyError(f"redis: reading the watermark of {partition} failed") from exc
        return 0 if stored is None else int(stored)

    def load_pending(
        self,
        users: Mapping[Partition, Collection[str]],
    ) -> dict[Partition, dict[str, bytes]]:
        order = [
            (p, chunk) for p, names in users.items() if names for chunk in _chunks(list(names))
        ]
        try:
            pipe = self._client.pipeline(transaction=False)
            for partition, names in order:
                args = [self.key(partition, "l:"), LABEL_SHARE]
                keys = [self.key(partition, "owner")]
                run_script(self._labels, keys, [*args, *self._in_buckets(partition, names)], pipe)
            replies: list[list[bytes | None]] = pipe.execute()
        except ERRORS as exc:
            raise DependencyError(f"redis: loading open labels failed: {exc}") from exc
        found: dict[Partition, dict[str, bytes]] = {p: {} for p in users}
        for (partition, names), values in zip(order, replies, strict=True):
            found[partition].update((u, v) for u, v in zip(names, values, strict=True) if v)
        return found

    def segment_sizes(self, partitions: Collection[Partition]) -> dict[int, int]:
        try:
            pipe = self._client.pipeline(transaction=False)
            for partition in partitions:
                pipe.hgetall(self.key(partition, "segments"))
            replies: list[dict[bytes, bytes]] = pipe.execute()
        except ERRORS as exc:
            raise DependencyError(f"redis: reading segment sizes failed: {exc}") from exc
        return total_sizes(replies)

    def saved_partitions(self, topic: str) -> list[Partition]:
        """The partitions of ``topic`` a consumer saved an offset for. Their offset keys are
        asked in one pipeline (a cluster client's goes to each node at once), 256 at first,
        twice as many while the upper half has some."""
        limit, found = 256, []
        try:
            while limit <= 65_536:
                pipe = self._client.pipeline(transaction=False)
                for index in range(limit):
                    pipe.exists(self.key(Partition(topic, index), "offset"))
                found = [i for i, value in enumerate(pipe.execute()) if value]
                if not found or found[-1] < limit // 2:
                    break
                limit *= 2
        except ERRORS as exc:
            raise DependencyError(f"redis: finding the partitions of {topic} failed") from exc
        return [Partition(topic, i) for i in found]

    def find_user(
        self, partitions: Collection[Partition], user_id: str
    ) -> tuple[Partition, bytes, int] | None:
        """The partition holding ``user_id``'s record, the record and the partition's watermark
        (None: no partition holds it): one pipeline, whatever partitioner producers used."""
        order = list(partitions)
        try:
            buckets = [self.key(p, f"b:{bucket_of(user_id, self.buckets(p))}") for p in order]
            pipe = self._client.pipeline(transaction=False)
            for partition, bucket in zip(order, buckets, strict=True):
                pipe.hget(bucket, user_id)
                pipe.get(self.key(partition, "watermark"))
            found = pipe.execute()
        except ERRORS as exc:
            raise DependencyError(f"redis: reading user {user_id!r} failed") from exc
        for partition, record, watermark in zip(order, found[::2], found[1::2], strict=True):
            if record is not None:
                return partition, expand(record), int(watermark or 0)
        return None

    def erasures(self, partition: Partition) -> list[bytes]:
        try:
            return self._client.lrange(self.key(partition, "erasures"), 0, -1)  # type: ignore[return-value]
        except ERRORS as exc:
            raise DependencyError(f"redis: reading the erasures of {partition} failed") from exc

    def due_users(self, partition: Partition, until_ms: int, limit: int) -> list[str]:
        """About ``limit`` users due by ``until_ms`` (whole buckets: a few more at times), in
        calls that each read a bounded number of records, so a point read never waits long."""
        found: list[str] = []
        skip = 0  # buckets already read whose users due are in ``found``
        try:
            while len(found) < limit:
                args: list[Any] = [self.key(partition, "b:"), until_ms, limit - len(found)]
                more, kept, *users = self._due(
                    keys=[self.key(partition, "due")],
                    args=[*args, DUE_AT, DUE_RECORDS_READ, skip],
                )
                found += [u.decode() for u in users]
                skip += kept
                if not more:
                    break
        except ERRORS as exc:
            raise DependencyError(f"redis: reading due users of {partition} failed") from exc
        return found

    def scan_users(
        self, partition: Partition, cursor: int, count: int
    ) -> tuple[int, dict[str, bytes]]:
        """Whole buckets from bucket ``cursor`` on, until about ``count`` users."""
        buckets = self.buckets(partition)
        found: dict[str, bytes] = {}
        start, step = cursor, 8  # then as many buckets as the users so far say ``count`` needs
        try:
            while cursor < buckets and len(found) < count:
                upto = min(buckets, cursor + step)
                pipe = self._client.pipeline(transaction=False)
                for bucket in range(cursor, upto):
                    pipe.hgetall(self.key(partition, f"b:{bucket}"))
                for reply in pipe.execute():
                    users = [u.decode() for u in reply]
                    found.update(zip(users, expand_many(list(reply.values())), strict=True))
                cursor = upto
                per_bucket = max(len(found) / (cursor - start), 1 / 64)
                step = min(max(1, int((count - len(found)) / per_bucket) + 1), 4096)
        except ERRORS as exc:
            raise DependencyError(f"redis: scanning the users of {partition} failed") from exc
        return (0 if cursor >= buckets else cursor), found

    def close(self) -> None:
        self._client.close()
