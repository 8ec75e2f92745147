"""The layout of segstream's keys in Redis, and the upgrade from an earlier one.

Before Redis Cluster support, the models' keys had no hash tag: ``{prefix}:model:segments``,
``{prefix}:model:trainer``, ``{prefix}:segment-names`` and ``{prefix}:segment-lineage``. They now
live under the ``{models}`` tag (``stream.redis.model_store``). A process that finds the old
keys refuses to start (``LayoutError``) rather than train a new model beside the old one;
``segstream migrate`` moves them, with every ``serve`` stopped.
"""

from __future__ import annotations

from stream.errors import DependencyError, SegstreamError
from stream.redis.client import ERRORS, Client
from stream.redis.model_store import models_key

# Each earlier model key's suffix (after the prefix) and its name under the ``{models}`` tag.
LEGACY_MODEL_KEYS = {
    "model:segments": "segments",
    "segment-names": "segment-names",
    "segment-lineage": "segment-lineage",
}
LEGACY_LEASE = "model:trainer"  # a lease: dropped, not moved (the next trainer takes a new one)


class LayoutError(SegstreamError):
    """Redis holds keys of an earlier layout: ``segstream migrate`` upgrades them."""


def legacy_keys(client: Client, prefix: str) -> list[str]:
    """The earlier layout's keys this Redis holds."""
    names = [f"{prefix}:{suffix}" for suffix in (*LEGACY_MODEL_KEYS, LEGACY_LEASE)]
    try:
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.exists(name)
        present = pipe.execute()
    except ERRORS as exc:
        raise DependencyError(f"redis: checking the key layout failed: {exc}") from exc
    return [name for name, exists in zip(names, present, strict=True) if exists]


def check_layout(client: Client, prefix: str) -> None:
    """Raise ``LayoutError`` if Redis holds the earlier layout's keys."""
    found = legacy_keys(client, prefix)
    if found:
        raise LayoutError(
            f"Redis holds keys of an earlier segstream layout ({', '.join(found)}): stop every "
            "`segstream serve` and run `segstream migrate` (see docs/operations.md)"
        )


def migrate(client: Client, prefix: str) -> list[str]:
    """Move the earlier layout's model keys under the ``{models}`` tag (DUMP and RESTORE: the
    two names may live on different cluster nodes) and drop the old trainer lease. Returns the
    keys moved or dropped. Refuses (``LayoutError``) to overwrite a key the new layout already
    has: a service of this version has run on this Redis since, and a person must choose."""
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
