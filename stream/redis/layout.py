"""The layout of segstream's keys in Redis, and the upgrade from earlier ones.

Two earlier layouts are upgraded by ``segstream migrate`` (with every ``serve`` stopped):

- the models' keys without a hash tag (``{prefix}:model:segments``, ``{prefix}:model:trainer``,
  ``{prefix}:segment-names``, ``{prefix}:segment-lineage``), now under the ``{models}`` tag
  (``stream.redis.model_store``);
- a key per user (``{prefix}:{topic-N}:u:<user>``, with a TTL), a due index by user and one
  labels hash per partition, now buckets of users (``stream.redis.state_store``). A partition
  is in this layout once it has a ``buckets`` key; one with an offset and none is older.

A process that finds an earlier layout refuses to start (``LayoutError``) rather than write a
second state beside the first.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

from redis.cluster import RedisCluster

from stream.errors import DependencyError, SegstreamError
from stream.ports import Partition
from stream.redis.client import ERRORS, Client
from stream.redis.compact import DUE_AT, compact_many
from stream.redis.model_store import models_key
from stream.redis.state_store import LABEL_SHARE, RedisStateStore

# Each earlier model key's suffix (after the prefix) and its name under the ``{models}`` tag.
LEGACY_MODEL_KEYS = {
    "model:segments": "segments",
    "segment-names": "segment-names",
    "segment-lineage": "segment-lineage",
}
LEGACY_LEASE = "model:trainer"  # a lease: dropped, not moved (the next trainer takes a new one)
# The Redis settings that keep a bucket one compact listpack (docs/sizing.md): at least these.
LISTPACK_SETTINGS = {"hash-max-listpack-entries": 512, "hash-max-listpack-value": 1024}
_CHUNK = 1000  # users moved per round trip


class LayoutError(SegstreamError):
    """Redis holds keys of an earlier layout: ``segstream migrate`` upgrades them."""


def legacy_keys(client: Client, prefix: str) -> list[str]:
    """The earlier model layout's keys this Redis holds."""
    names = [f"{prefix}:{suffix}" for suffix in (*LEGACY_MODEL_KEYS, LEGACY_LEASE)]
    try:
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.exists(name)
        present = pipe.execute()
    except ERRORS as exc:
        raise DependencyError(f"redis: checking the key layout failed: {exc}") from exc
    return [name for name, exists in zip(names, present, strict=True) if exists]


def unbucketed(client: Client, prefix: str, topic: str) -> list[Partition]:
    """The partitions of ``topic`` with a stored offset and a key per user (no buckets)."""
    store = RedisStateStore(client, prefix)
    partitions = store.saved_partitions(topic)
    try:
        pipe = client.pipeline(transaction=False)
        for partition in partitions:
            pipe.exists(store.key(partition, "buckets"))
        present = pipe.execute()
    except ERRORS as exc:
        raise DependencyError(f"redis: checking the key layout failed: {exc}") from exc
    return [p for p, exists in zip(partitions, present, strict=True) if not exists]


def listpack_advice(client: Client) -> str | None:
    """What to change if Redis would keep buckets as hash tables (about twice the memory);
    None if its settings suit them, or if it does not tell (a managed Redis may refuse
    CONFIG)."""
    try:
        found: dict[Any, Any] = {}
        for name in LISTPACK_SETTINGS:
            reply: Any = client.config_get(name)
            found.update(reply)
    except ERRORS:
        return None
    values = {k.decode() if isinstance(k, bytes) else k: v for k, v in found.items()}
    low = {
        name: wanted
        for name, wanted in LISTPACK_SETTINGS.items()
        if isinstance(values.get(name), (str, bytes)) and int(values[name]) < wanted
    }
    if not low:
        return None
    wanted = ", ".join(f"{name} {value}" for name, value in low.items())
    return f"Redis keeps users' buckets as hash tables, at about twice the memory: set {wanted}"


def check_layout(client: Client, prefix: str, topic: str) -> None:
    """Raise ``LayoutError`` if Redis holds an earlier layout's keys."""
    found = legacy_keys(client, prefix) + [str(p) for p in unbucketed(client, prefix, topic)]
    if found:
        raise LayoutError(
            f"Redis holds keys of an earlier segstream layout ({', '.join(found[:6])}): stop "
            "every `segstream serve` and run `segstream migrate` (see docs/operations.md)"
        )


def migrate(client: Client, prefix: str, topic: str, buckets: int) -> list[str]:
    """Upgrade every earlier layout's keys; returns what was moved. Safe to run again after
    an interruption: each step is repeated or finds nothing left to do."""
    return _migrate_models(client, prefix) + [
        f"{partition}: {_bucket_partition(client, prefix, partition, buckets)} users"
        for partition in unbucketed(client, prefix, topic)
    ]


def _migrate_models(client: Client, prefix: str) -> list[str]:
    """Move the model keys under the ``{models}`` tag (DUMP and RESTORE: the two names may
    live on different cluster nodes) and drop the old trainer lease. Refuses (``LayoutError``)
    to overwrite a key the new layout already has: a service of this version has run on this
    Redis since, and a person must choose."""
    moved = []
    try:
        for suffix, name in LEGACY_MODEL_KEYS.items():
            old, new = f"{prefix}:{suffix}", models_key(prefix, name)
            dumped = client.dump(old)
            if dumped is None:
                continue
            if client.exists(new):
                raise LayoutError(f"both {old} and {new} exist: delete the one not wanted")
            client.restore(new, 0, dumped)
            client.delete(old)
            moved.append(old)
        if client.delete(f"{prefix}:{LEGACY_LEASE}"):
            moved.append(f"{prefix}:{LEGACY_LEASE}")
    except ERRORS as exc:
        raise DependencyError(f"redis: migrating the key layout failed: {exc}") from exc
    return moved


def _bucket_partition(client: Client, prefix: str, partition: Partition, buckets: int) -> int:
    """Move a partition's users into buckets, then its labels, then rebuild its due index from
    the records; its ``buckets`` key, set last, marks it done. Returns the users moved."""
    store = RedisStateStore(client, prefix)
    key = store.key
    try:
        # The bucket count chosen by the first run, should this one repeat an interrupted one.
        client.set(key(partition, "migrating"), buckets, nx=True)
        count = int(client.get(key(partition, "migrating")) or buckets)
        moved = 0
        for names in _chunks(_scan(client, key(partition, "u:*"))):
            stored: list[Any] = client.mget(names) if names else []
            present = [(name, record) for name, record in zip(names, stored, strict=True) if record]
            compact = compact_many([record for _, record in present])
            pipe = client.pipeline(transaction=False)
            for (name, _), record in zip(present, compact, strict=True):
                user = name[len(key(partition, "u:").encode()) :]
                pipe.hset(key(partition, f"b:{zlib.crc32(user) % count}"), user, record)
            pipe.execute()
            client.delete(*names)
            moved += len(names)
        labels = key(partition, "labels")
        pipe = client.pipeline(transaction=False)
        for user, value in client.hscan_iter(labels, count=_CHUNK):
            bucket = zlib.crc32(user) % count // LABEL_SHARE
            pipe.hset(key(partition, f"l:{bucket}"), user, value)
        pipe.delete(labels)
        pipe.execute()
        due = key(partition, "due")
        client.delete(due)  # by user before; by bucket now, from the records themselves
        for first in range(0, count, _CHUNK):
            pipe = client.pipeline(transaction=False)
            for bucket in range(first, min(count, first + _CHUNK)):
                pipe.hvals(key(partition, f"b:{bucket}"))
            bounds: dict[str, float] = {}
            for offset, values in enumerate(pipe.execute()):
                dues = [int.from_bytes(v[DUE_AT : DUE_AT + 8], "little") for v in values]
                if any(d > 0 for d in dues):
                    bounds[str(first + offset)] = min(d for d in dues if d > 0)
            if bounds:
                client.zadd(due, bounds)
        client.set(key(partition, "buckets"), count)
        client.delete(key(partition, "migrating"))
    except ERRORS as exc:
        raise DependencyError(f"redis: migrating {partition} failed: {exc}") from exc
    return moved


def _scan(client: Client, match: str) -> Iterator[bytes]:
    """The keys matching ``match`` within one partition's slot (on its node, in a cluster)."""
    options: dict[str, Any] = {"match": match, "count": _CHUNK}
    if isinstance(client, RedisCluster):
        options["target_nodes"] = client.get_node_from_key(match)  # type: ignore[no-untyped-call]
    cursor: Any = 0
    while True:
        reply: Any = client.scan(cursor, **options)
        cursor, keys = reply
        if isinstance(cursor, dict):
            cursor = next(iter(cursor.values()))
        yield from keys
        if not cursor:
            return


def _chunks(keys: Iterator[bytes]) -> Iterator[list[bytes]]:
    """The keys in lists of ``_CHUNK`` (the keys are deleted as they go, so they are listed
    first: a scan need not see keys deleted behind it, but must see the others)."""
    listed = list(keys)
    for at in range(0, len(listed), _CHUNK):
        yield listed[at : at + _CHUNK]
