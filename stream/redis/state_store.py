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
from stream.redis.scripts import DUE_SCRIPT, LABELS_SCRIPT, LOAD_SCRIPT, SAVE_SCRIPT

DEFAULT_BUCKETS = 16_384  # per partition (SEGSTREAM_REDIS_BUCKETS)
LABEL_SHARE = 4  # record buckets per label bucket (a quarter of the users are sampled)
DUE_RECORDS_READ = 2000  # about the most records one call of the due script reads


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
        self._save = client.register_script(SAVE_SCRIPT)
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
        if stored is None:
            self._saved.pop(partition, None)
            return None
        self._saved[partition] = int(stored)
        return int(stored)

    def load(self, users: Mapping[Partition, Collection[str]]) -> dict[Partition, dict[str, bytes]]:
        order = [(p, list(names)) for p, names in users.items()]
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
        found: dict[Partition, dict[str, bytes]] = {}
        lost: list[Partition] = []
        taken: list[Partition] = []
        for (partition, names), (owner, offset, *values) in zip(order, replies, strict=True):
            saved = self._saved.get(partition)
            if owner is None or (saved is not None and (offset is None or int(offset) < saved)):
                lost.append(partition)
            elif owner.decode() != self._tokens.get(partition):
                taken.append(partition)
            present = [(u, v) for u, v in zip(names, values, strict=True) if v is not None]
            records = expand_many([v for _, v in present])
            found[partition] = {u: r for (u, _), r in zip(present, records, strict=True)}
        if lost:
            raise StateLost(lost)
        if taken:
            raise PartitionLost(taken)
        return found

    def save(self, writes: Mapping[Partition, PartitionWrite]) -> None:
        lost = [p for p in writes if p not in self._tokens]
        order = [(p, w) for p, w in writes.items() if p in self._tokens]
        try:
            pipe = self._client.pipeline(transaction=False)
            for partition, write in order:
                keys = [
                    self.key(partition, suffix)
                    for suffix in ("owner", "offset", "watermark", "due", "segments", "erasures")
                ]
                deltas = [n for pair in write.segment_deltas.items() for n in pair]
                users = write.users
                patched = {u: due for u, due in write.dues.items() if u not in users}
                args: list[Any] = [
                    self._tokens[partition],
                    write.first_offset,
                    write.next_offset,
                    write.watermark_ms,
                    self._saved.get(partition, ""),
                    self.key(partition, "b:"),
                    self.key(partition, "l:"),
                    LABEL_SHARE,
                    ",".join(map(str, deltas)),
                    *_framed(list(write.audit)),
                    DUE_AT,
                    *self._in_buckets(partition, write.deleted),
                    *_framed([u.encode() for u in write.pending]),
                    *_framed(list(write.pending.values())),
                    self._in_buckets(partition, write.pending)[2],
                    *_framed([u.encode() for u in users]),
                    *_framed(compact_many(list(users.values()))),
                    self._in_buckets(partition, users)[2],
                    *self._in_buckets(partition, patched),
                    b"".join(d.to_bytes(8, "little", signed=True) for d in patched.values()),
                ]
                run_script(self._save, keys, args, pipe)
            replies = pipe.execute(raise_on_error=False)
        except ERRORS as exc:
            raise DependencyError(f"redis: saving state failed: {exc}") from exc
        vanished: list[Partition] = []
        for (partition, write), reply in zip(order, replies, strict=True):
            if isinstance(reply, redis.ResponseError):
                if str(reply).startswith(("FENCED", "LOST")):
                    (lost if str(reply).startswith("FENCED") else vanished).append(partition)
                    self._tokens.pop(partition, None)
                else:
                    raise DependencyError(f"redis: saving {partition} failed: {reply}")
            else:
                self._saved[partition] = write.next_offset
        if vanished:
            raise StateLost(vanished)
        if lost:
            raise PartitionLost(lost)

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
        order = [(p, list(names)) for p, names in users.items() if names]
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
            found[partition] = {u: v for u, v in zip(names, values, strict=True) if v}
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
        step = max(16, count // 8)  # buckets per round trip, doubled while they are sparse
        try:
            while cursor < buckets and len(found) < count:
                upto = min(buckets, cursor + step)
                pipe = self._client.pipeline(transaction=False)
                for bucket in range(cursor, upto):
                    pipe.hgetall(self.key(partition, f"b:{bucket}"))
                for reply in pipe.execute():
                    users = [u.decode() for u in reply]
                    found.update(zip(users, expand_many(list(reply.values())), strict=True))
                cursor, step = upto, min(step * 2, 4096)
        except ERRORS as exc:
            raise DependencyError(f"redis: scanning the users of {partition} failed") from exc
        return (0 if cursor >= buckets else cursor), found

    def close(self) -> None:
        self._client.close()
