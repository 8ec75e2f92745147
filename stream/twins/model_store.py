"""The in-memory twin of the model store, for unit tests and the embedded demo (the real one:
``stream.redis.model_store``), with its trainer lease on an injectable monotonic clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from operators.segments import SegmentSnapshot
from operators.tags import TagModel


class InMemoryModelStore:
    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._snapshot: SegmentSnapshot | None = None
        self._trainer_state: bytes | None = None
        self._tags: dict[str, TagModel] = {}
        self._tag_trainers: bytes | None = None
        self._lease: tuple[str, float] | None = None  # (holder, expiry in monotonic seconds)
        self._monotonic = monotonic
        self.names: dict[int, str] = {}  # what the API's PUT writes, for tests
        self.lineage: dict[int, dict[str, Any]] = {}

    def lose_everything(self) -> None:
        """What a Redis restart without persistence does to the models (the tests' fault)."""
        self._snapshot = self._trainer_state = self._tag_trainers = self._lease = None
        self._tags = {}

    def load_lineage(self) -> dict[int, dict[str, Any]]:
        return {k: dict(v) for k, v in self.lineage.items()}

    def save_lineage(self, records: Mapping[int, Mapping[str, Any]]) -> None:
        self.lineage.update({k: dict(v) for k, v in records.items()})

    def load_segment_names(self) -> dict[int, str]:
        return dict(self.names)

    def load_snapshot(self) -> SegmentSnapshot | None:
        return self._snapshot

    def load_tag_trainers(self) -> bytes | None:
        return self._tag_trainers

    def hold_trainer_lease(self, token: str, lease_ms: int) -> bool:
        now = self._monotonic()
        if self._lease is not None and self._lease[0] != token and self._lease[1] > now:
            return False
        self._lease = (token, now + lease_ms / 1000)
        return True

    def load(self) -> tuple[SegmentSnapshot | None, bytes | None]:
        return self._snapshot, self._trainer_state

    def save(self, snapshot: SegmentSnapshot, trainer_state: bytes | None) -> None:
        self._snapshot, self._trainer_state = snapshot, trainer_state

    def load_tags(self) -> dict[str, TagModel]:
        return dict(self._tags)

    def save_tags(self, models: Mapping[str, TagModel], tag_trainers: bytes | None = None) -> None:
        self._tags = dict(models)
        if tag_trainers is not None:
            self._tag_trainers = tag_trainers
