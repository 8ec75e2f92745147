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
    {prefix}:{models}:...             the published models (``stream.redis.model_store``)
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import redis
from redis.cluster import RedisCluster

from operators.record import NEXT_DUE_AT
from stream.errors import DependencyError, PartitionLost, StateLost
from stream.ports import Partition, PartitionWrite
from stream.redis.client import ERRORS, Client, run_script
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
    def __init__(self, client: Client, prefix: str = "segstream", ttl_s: int = 0) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._tokens: dict[Partition, str] = {}
        # The offset each partition's store holds as far as we know: it must not vanish or go
        # back (a failover to a replica that missed our last writes).
        self._saved: dict[Partition, int] = {}
        self._save = client.register_script(SAVE_SCRIPT)
        self._load = client.register_script(LOAD_SCRIPT)
        self._labels = client.register_script(LABELS_SCRIPT)

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
        except ERRORS as exc:
            raise DependencyError(f"redis: claiming {partition} failed: {exc}") from exc
        self._tokens[partition] = token
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
                    [self.user_key(partition, ""), *_framed([u.encode() for u in names])],
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
                    self._saved.get(partition, ""),
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
                run_script(
                    self._labels,
                    [self.key(partition, "labels")],
                    list(_framed([u.encode() for u in names])),
                    pipe,
                )
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
            pipe = self._client.pipeline(transaction=False)
            for partition in order:
                pipe.get(self.user_key(partition, user_id))
                pipe.get(self.key(partition, "watermark"))
            found = pipe.execute()
        except ERRORS as exc:
            raise DependencyError(f"redis: reading user {user_id!r} failed") from exc
        for partition, record, watermark in zip(order, found[::2], found[1::2], strict=True):
            if record is not None:
                return partition, record, int(watermark or 0)
        return None

    def erasures(self, partition: Partition) -> list[bytes]:
        try:
            return self._client.lrange(self.key(partition, "erasures"), 0, -1)  # type: ignore[return-value]
        except ERRORS as exc:
            raise DependencyError(f"redis: reading the erasures of {partition} failed") from exc

    def due_users(self, partition: Partition, until_ms: int, limit: int) -> list[str]:
        try:
            users: list[bytes] = self._client.zrangebyscore(  # type: ignore[assignment]
                self.key(partition, "due"), "-inf", until_ms, start=0, num=limit
            )
        except ERRORS as exc:
            raise DependencyError(f"redis: reading due users of {partition} failed") from exc
        return [u.decode() for u in users]

    def scan_users(
        self, partition: Partition, cursor: int, count: int
    ) -> tuple[int, dict[str, bytes]]:
        match = self.user_key(partition, "*")
        try:
            if isinstance(self._client, RedisCluster):  # the node of the partition's slot
                node = self._client.get_node_from_key(match)  # type: ignore[no-untyped-call]
                reply: Any = self._client.scan(cursor, match=match, count=count, target_nodes=node)
                cursors, keys = reply
                following = cursors[node.name]
            else:
                following, keys = self._client.scan(cursor, match=match, count=count)
            names = [k if isinstance(k, bytes) else k.encode() for k in keys]
            values: list[bytes | None] = []
            if names:
                values = self._client.mget(names)  # type: ignore[assignment]
        except ERRORS as exc:
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
