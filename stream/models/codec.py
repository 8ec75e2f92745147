"""The one codec of the models' documents: every model, learner state and model file that
leaves a process is versioned JSON with a header naming its kind and layout version. What
crosses into Redis or a file is numbers and names, never a pickle, so loading it never runs
code and a River upgrade cannot make it unreadable. A document of another kind or version is
refused, never guessed at.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final, NamedTuple

from river import preprocessing


class Kind(NamedTuple):
    """A document's header: what it is, and the layout version this release reads."""

    name: str
    version: int


SEGMENT_TRAINER: Final = Kind("segstream.segment-trainer", 1)
TAG_TRAINERS: Final = Kind("segstream.tag-learners", 1)
MODEL_FILE: Final = Kind("segstream-model", 1)  # `segstream model export|import`


def header(kind: Kind) -> dict[str, Any]:
    return {"format": kind.name, "version": kind.version}


def check(doc: Any, kind: Kind, what: str = "state") -> dict[str, Any]:
    """``doc`` if it is a ``kind`` document of this release's version, else ValueError."""
    if not isinstance(doc, dict) or doc.get("format") != kind.name:
        raise ValueError(
            f"not a {kind.name} document"
            if what == "file"
            else f"not a {kind.name} state (an old pickle?)"
        )
    if doc.get("version") != kind.version:
        raise ValueError(
            f"{'model file' if what == 'file' else 'state'} version {doc.get('version')!r}; "
            f"this release reads version {kind.version}"
        )
    return doc


def dump_state(kind: Kind, body: Mapping[str, Any]) -> bytes:
    """``body`` under ``kind``'s header, as compact JSON bytes (a Redis value)."""
    return json.dumps({**header(kind), **body}, separators=(",", ":")).encode()


def load_state(blob: bytes, kind: Kind) -> dict[str, Any]:
    """The document ``dump_state`` wrote; ValueError if it is another kind or version."""
    doc = json.loads(blob)  # bytes that are not UTF-8 JSON (an old pickle) raise ValueError
    return check(doc, kind)


def scaler_to_dict(scaler: preprocessing.StandardScaler) -> dict[str, dict[str, float]]:
    return {"counts": dict(scaler.counts), "means": dict(scaler.means), "vars": dict(scaler.vars)}


def scaler_from_dict(doc: Mapping[str, Mapping[str, float]]) -> preprocessing.StandardScaler:
    scaler = preprocessing.StandardScaler()
    for name in ("counts", "means", "vars"):
        getattr(scaler, name).update(doc[name])
    return scaler
