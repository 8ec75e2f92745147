"""The published models in Redis: one hash, ``{prefix}:{models}:segments``, with the segment
snapshot (``snapshot``, JSON), its trainer's state (``trainer``, versioned JSON), the tag models
(``tags``, JSON) and their tag trainers' state (``learners``, versioned JSON); the trainer lease,
``{prefix}:{models}:trainer``; the analysts' segment names, ``{prefix}:{models}:segment-names``;
and each segment's history, ``{prefix}:{models}:segment-lineage``. The ``{models}`` hash tag
keeps them in one Redis Cluster slot."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from operators.segments import SegmentSnapshot
from operators.tags import TagModel
from stream.errors import DependencyError
from stream.redis.client import ERRORS, Client

# Take the trainer lease if free, renew it if ours. KEYS: lease; ARGV: token, lease in ms.
_LEASE_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


def models_key(prefix: str, name: str) -> str:
    """One of the models' keys (above), under their hash tag."""
    return f"{prefix}:{{models}}:{name}"


def names_key(prefix: str) -> str:
    """The hash of analysts' segment names (``PUT /v1/segments/{id}/name``): id -> name."""
    return models_key(prefix, "segment-names")


class RedisModelStore:
    """The published models in one hash (``<prefix>:{models}:segments``): the segment snapshot
    (JSON) and its trainer's state, the tag models (JSON) and their trainers' state."""

    def __init__(self, client: Client, prefix: str = "segstream") -> None:
        self._client = client
        self._key = models_key(prefix, "segments")
        self._lease_key = models_key(prefix, "trainer")
        self.names_key = names_key(prefix)
        self._lineage_key = models_key(prefix, "segment-lineage")  # segment id -> history, JSON
        self._lease = client.register_script(_LEASE_SCRIPT)

    def _get(self, *fields: str) -> list[bytes | None]:
        try:
            return self._client.hmget(self._key, list(fields))  # type: ignore[return-value]
        except ERRORS as exc:
            raise DependencyError(f"redis: loading {', '.join(fields)} failed: {exc}") from exc

    def _set(self, mapping: Mapping[str, bytes | str | None], key: str | None = None) -> None:
        """Set the fields given (None: left as they are) of the models' hash, or of ``key``."""
        present = {k: v for k, v in mapping.items() if v is not None}
        try:
            self._client.hset(key or self._key, mapping=present)  # type: ignore[arg-type]
        except ERRORS as exc:
            raise DependencyError(f"redis: saving {', '.join(present)} failed: {exc}") from exc

    def _all(self, key: str, what: str) -> dict[bytes, bytes]:
        try:
            return self._client.hgetall(key)  # type: ignore[return-value]
        except ERRORS as exc:
            raise DependencyError(f"redis: loading {what} failed: {exc}") from exc

    def load(self) -> tuple[SegmentSnapshot | None, bytes | None]:
        snapshot, trainer = self._get("snapshot", "trainer")
        if snapshot is None:
            return None, None
        return SegmentSnapshot.from_dict(json.loads(snapshot)), trainer

    def load_lineage(self) -> dict[int, dict[str, Any]]:
        found = self._all(self._lineage_key, "segment lineage")
        return {int(k): json.loads(v) for k, v in found.items()}

    def save_lineage(self, records: Mapping[int, Mapping[str, Any]]) -> None:
        if records:
            self._set({str(k): json.dumps(v) for k, v in records.items()}, self._lineage_key)

    def load_segment_names(self) -> dict[int, str]:
        names = self._all(self.names_key, "segment names")
        return {int(k): v.decode() for k, v in names.items()}

    def load_published(self) -> tuple[bytes | None, bytes | None]:
        """The published segment snapshot and tag models as stored (``parse_published``)."""
        snapshot, tags = self._get("snapshot", "tags")
        return snapshot, tags

    @staticmethod
    def parse_published(
        snapshot: bytes | None, tags: bytes | None
    ) -> tuple[SegmentSnapshot | None, dict[str, TagModel]]:
        models = {doc["tag"]: TagModel.from_dict(doc) for doc in json.loads(tags)} if tags else {}
        return (SegmentSnapshot.from_dict(json.loads(snapshot)) if snapshot else None), models

    def load_snapshot(self) -> SegmentSnapshot | None:
        (snapshot,) = self._get("snapshot")
        return self.parse_published(snapshot, None)[0]

    def save(self, snapshot: SegmentSnapshot, trainer_state: bytes | None) -> None:
        self._set({"snapshot": json.dumps(snapshot.to_dict()).encode(), "trainer": trainer_state})

    def load_tags(self) -> dict[str, TagModel]:
        (stored,) = self._get("tags")
        return self.parse_published(None, stored)[1]

    def load_tag_trainers(self) -> bytes | None:
        (tag_trainers,) = self._get("learners")
        return tag_trainers

    def save_tags(self, models: Mapping[str, TagModel], tag_trainers: bytes | None = None) -> None:
        self._set(
            {
                "tags": json.dumps([m.to_dict() for m in models.values()]).encode(),
                "learners": tag_trainers,
            }
        )

    def replace(
        self,
        snapshot: SegmentSnapshot,
        trainer_state: bytes | None,
        tags: Mapping[str, TagModel],
        tag_trainers: bytes | None,
    ) -> None:
        """Publish all of it at once, dropping state the new models do not come with."""
        mapping = {
            "snapshot": json.dumps(snapshot.to_dict()).encode(),
            "tags": json.dumps([m.to_dict() for m in tags.values()]).encode(),
            "trainer": trainer_state,
            "learners": tag_trainers,
        }
        try:
            with self._client.pipeline(transaction=True) as pipe:
                pipe.delete(self._key)
                pipe.hset(self._key, mapping={k: v for k, v in mapping.items() if v is not None})
                pipe.execute()
        except ERRORS as exc:
            raise DependencyError(f"redis: publishing the models failed: {exc}") from exc

    def hold_trainer_lease(self, token: str, lease_ms: int) -> bool:
        try:
            return bool(self._lease(keys=[self._lease_key], args=[token, lease_ms]))
        except ERRORS as exc:
            raise DependencyError(f"redis: the trainer lease failed: {exc}") from exc
