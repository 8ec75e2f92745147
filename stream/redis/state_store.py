"""User state and partition offsets in Redis (the models: ``stream.redis.model_store``).

Key layout (``{prefix}`` defaults to ``segstream``; the ``{topic-N}`` hash tag keeps one
partition's keys in one Redis Cluster slot, so the save script may touch them all):

    {prefix}:{<topic>-<N>}:owner      token of the consumer allowed to write partition N
    {prefix}:{<topic>-<N>}:offset     next offset of partition N to process
    {prefix}:{<topic>-<N>}:watermark  the partition's event-time watermark (epoch ms)
    {prefix}:{<topic>-<N>}:due        sorted set: user -> time of their next re-scoring
    {prefix}:{<topic>-<N>}:segments   hash: segment id -> users of partition N in it
    {prefix}:{<topic>-<N>}:labels     hash: user -> open tag labels (sampled users only)
    {prefix}:{<topic>-<N>}:erasures   list: the audit log of erasures applied (no user ids)
    {prefix}:{<topic>-<N>}:u:<user>   the user's packed record (``operators.features``)
    {prefix}:model:segments           the published models (``stream.redis.model_store``)
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import redis

from operators.record import NEXT_DUE_AT
from stream.errors import DependencyError, PartitionLost, StateLost
from stream.ports import Partition, PartitionWrite
from stream.redis.scripts import LABELS_SCRIPT, LOAD_SCRIPT, SAVE_SCRIPT


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
    def __init__(self, client: redis.Redis, prefix: str = "segstream", ttl_s: int = 0) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._tokens: dict[Partition, str] = {}
        self._has_offset: set[Partition] = set()  # an offset was stored: it must not vanish
        self._save = client.register_script(SAVE_SCRIPT)
        self._load = client.register_script(LOAD_SCRIPT)
        self._labels = client.register_script(LABELS_SCRIPT)

    @classmethod
    def from_url(cls, url: str, prefix: str, ttl_s: int = 0) -> RedisStateStore:
        return cls(redis.Redis.from_url(url, socket_timeout=10), prefix, ttl_s)

    def key(self, partition: Partition, suffix: str) -> str:
        """The key of one of the partition's values (the layout above)."""
        return f"{self._prefix}:{{{partition.topic}-{partition.index}}}:{suffix}"

    def user_key(self, partition: Partition, user_id: str) -> str:
        return self.key(partition, f"u:{user_id}")

    def claim(self, partition: Partition) -> int | None:
        token = uuid.uuid4().hex
        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.set(self.key(partition, "owner"), token)
            pipe.get(self.key(partition, "offset"))
            _, stored = pipe.execute()
        except redis.RedisError as exc:
            raise DependencyError(f"redis: claiming {partition} failed: {exc}") from exc
        self._tokens[partition] = token
        if stored is None:
            self._has_offset.discard(partition)
            return None
        self._has_offset.add(partition)
        return int(stored)

    def load(self, users: Mapping[Partition, Collection[str]]) -> dict[Partition, dict[str, bytes]]:
        order = [(p, list(names)) for p, names in users.items()]
        try:
            pipe = self._client.pipeline(transaction=False)
            for partition, names in order:
                self._load(
                    keys=[self.key(partition, "owner"), self.key(partition, "offset")],
                    args=[self.user_key(partition, ""), *_framed([u.encode() for u in names])],
                    client=pipe,
                )
            replies: list[Any] = pipe.execute()
        except redis.RedisError as exc:
            raise DependencyError(f"redis: loading user state failed: {exc}") from exc
        found: dict[Partition, dict[str, bytes]] = {}
        lost: list[Partition] = []
        taken: list[Partition] = []
        for (partition, names), (owner, offset, *values) in zip(order, replies, strict=True):
            if owner is None or (offset is None and partition in self._has_offset):
                lost.append(partition)
            elif owner.decode() != self._tokens.get(partition):
                taken.append(partition)
            found[partition] = {u: v for u, v in zip(names, values, strict=True) if v is not None}
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
                    for suffix in ("owner", "offset", "watermark", "due", "segments")
                ]
                keys += [self.key(partition, "labels"), self.key(partition, "erasures")]
                deltas = [n for pair in write.segment_deltas.items() for n in pair]
                users = write.users
                patched = {u: due for u, due in write.dues.items() if due and u not in users}
                args: list[Any] = [
                    self._tokens[partition],
                    write.first_offset,
                    write.next_offset,
                    self._ttl_s,
                    write.watermark_ms,
                    "1" if partition in self._has_offset else "0",
                    self.user_key(partition, ""),
                    *_framed([u.encode() for u in write.deleted]),
                    *_framed([u.encode() for u in write.dues]),
                    ",".join(map(str, write.dues.values())),
                    ",".join(map(str, deltas)),
                    *_framed([u.encode() for u in write.pending]),
                    *_framed(list(write.pending.values())),
                    *_framed([u.encode() for u in write.users]),
                    *_framed(list(write.users.values())),
                    *_framed(list(write.audit)),
                    *_framed([u.encode() for u in patched]),
                    b"".join(d.to_bytes(8, "little", signed=True) for d in patched.values()),
                    NEXT_DUE_AT,
                ]
                self._save(keys=keys, args=args, client=pipe)
            replies = pipe.execute(raise_on_error=False)
        except redis.RedisError as exc:
            raise DependencyError(f"redis: saving state failed: {exc}") from exc
        vanished: list[Partition] = []
        for (partition, _), reply in zip(order, replies, strict=True):
            if isinstance(reply, redis.ResponseError):
                if str(reply).startswith(("FENCED", "LOST")):
                    (lost if str(reply).startswith("FENCED") else vanished).append(partition)
                    self._tokens.pop(partition, None)
                else:
                    raise DependencyError(f"redis: saving {partition} failed: {reply}")
            else:
                self._has_offset.add(partition)
        if vanished:
            raise StateLost(vanished)
        if lost:
            raise PartitionLost(lost)

    def next_offset(self, partition: Partition) -> int | None:
        try:
            stored = self._client.get(self.key(partition, "offset"))
        except redis.RedisError as exc:
            raise DependencyError(f"redis: reading the offset of {partition} failed") from exc
        return None if stored is None else int(stored)

    def watermark(self, partition: Partition) -> int:
        try:
            stored = self._client.get(self.key(partition, "watermark"))
        except redis.RedisError as exc:
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
                self._labels(
                    keys=[self.key(partition, "labels")],
                    args=list(_framed([u.encode() for u in names])),
                    client=pipe,
                )
            replies: list[list[bytes | None]] = pipe.execute()
        except redis.RedisError as exc:
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
        except redis.RedisError as exc:
            raise DependencyError(f"redis: reading segment sizes failed: {exc}") from exc
        return total_sizes(replies)

    def erasures(self, partition: Partition) -> list[bytes]:
        try:
            return self._client.lrange(self.key(partition, "erasures"), 0, -1)  # type: ignore[return-value]
        except redis.RedisError as exc:
            raise DependencyError(f"redis: reading the erasures of {partition} failed") from exc

    def due_users(self, partition: Partition, until_ms: int, limit: int) -> list[str]:
        try:
            users: list[bytes] = self._client.zrangebyscore(  # type: ignore[assignment]
                self.key(partition, "due"), "-inf", until_ms, start=0, num=limit
            )
        except redis.RedisError as exc:
            raise DependencyError(f"redis: reading due users of {partition} failed") from exc
        return [u.decode() for u in users]

    def scan_users(
        self, partition: Partition, cursor: int, count: int
    ) -> tuple[int, dict[str, bytes]]:
        try:
            following, keys = self._client.scan(
                cursor, match=self.user_key(partition, "*"), count=count
            )
            names = [k if isinstance(k, bytes) else k.encode() for k in keys]
            values: list[bytes | None] = []
            if names:
                values = self._client.mget(names)  # type: ignore[assignment]
        except redis.RedisError as exc:
            raise DependencyError(f"redis: scanning the users of {partition} failed") from exc
        prefix = len(self.user_key(partition, ""))
        found = {
            key.decode()[prefix:]: value
            for key, value in zip(names, values, strict=True)
            if value is not None
        }
        return int(following), found

    def close(self) -> None:
        self._client.close()
