"""``segstream model export`` / ``model import``: the published models as one JSON document.

What it is for: freezing a model in production (import a reviewed model, serve with
``SEGSTREAM_TRAINING=false``), promoting one from staging, keeping a copy before an upgrade.
The document holds the segment snapshot, the tag models and, when present, the trainers' state
(so a training process resumes where the exported one stopped). It is plain data with a format
name and version; importing never runs code, and a document of another version is refused.

Versions never go backwards: importing into a store that holds a different model of the same
or a higher version publishes the imported one a version above it (the segment ids stay).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from operators.segments import SegmentSnapshot
from operators.tags import TagModel
from stream.models.codec import MODEL_FILE, check, header
from stream.models.segment_trainer import SegmentTrainer
from stream.ports import ModelStore


class ReplaceableStore(ModelStore, Protocol):
    """A model store that can publish a whole set of models at once (Redis's)."""

    def replace(
        self,
        snapshot: SegmentSnapshot,
        trainer_state: bytes | None,
        tags: Mapping[str, TagModel],
        tag_trainers: bytes | None,
    ) -> None: ...


class ModelFileError(ValueError):
    """The document is not a model this release can import."""


def export_model(store: ModelStore) -> dict[str, Any]:
    """The store's published models as a document; ModelFileError if it holds none."""
    snapshot, trainer = store.load()
    if snapshot is None:
        raise ModelFileError("no segment model is published under this key prefix yet")
    tag_trainers = store.load_tag_trainers()
    return {
        **header(MODEL_FILE),
        "snapshot": snapshot.to_dict(),
        "tags": [model.to_dict() for model in store.load_tags().values()],
        "trainer": json.loads(trainer) if trainer else None,
        "learners": json.loads(tag_trainers) if tag_trainers else None,
    }


def import_model(store: ReplaceableStore, doc: Any) -> int:
    """Publish ``doc`` (from ``export_model``); returns the model version now published."""
    try:
        doc = check(doc, MODEL_FILE, "file")
    except ValueError as exc:
        raise ModelFileError(str(exc)) from exc
    try:
        snapshot = SegmentSnapshot.from_dict(doc["snapshot"])
        tags = [TagModel.from_dict(t) for t in doc.get("tags") or []]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"the model file is damaged: {exc!r}") from exc
    current = store.load_snapshot()
    if current is not None and current != snapshot and current.version >= snapshot.version:
        snapshot = replace(snapshot, version=current.version + 1)
    trainer_state: bytes | None = None
    if doc.get("trainer") is not None:
        trainer = SegmentTrainer.restore(json.dumps(doc["trainer"]).encode())
        if trainer is None:
            raise ModelFileError("the model file's trainer state is unreadable")
        trainer.version, trainer.previous = snapshot.version, snapshot
        trainer_state = trainer.dump()
    tag_trainers = doc.get("learners")
    store.replace(
        snapshot,
        trainer_state,
        {t.tag: t for t in tags},
        json.dumps(tag_trainers).encode() if tag_trainers is not None else None,
    )
    return snapshot.version
