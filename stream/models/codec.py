"""Learner state as versioned JSON: what crosses into Redis is numbers and names, never a
pickle, so loading it never runs code and a River upgrade cannot make it unreadable."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from river import preprocessing


def dump_state(kind: str, version: int, body: Mapping[str, Any]) -> bytes:
    """``body`` under a header naming what it is (``kind``) and its layout ``version``."""
    return json.dumps({"format": kind, "version": version, **body}, separators=(",", ":")).encode()


def load_state(blob: bytes, kind: str, version: int) -> dict[str, Any]:
    """The document ``dump_state`` wrote; ValueError if it is another kind or version."""
    doc = json.loads(blob)  # bytes that are not UTF-8 JSON (an old pickle) raise ValueError
    if not isinstance(doc, dict) or doc.get("format") != kind:
        raise ValueError(f"not a {kind} state (an old pickle?)")
    if doc.get("version") != version:
        raise ValueError(f"state version {doc.get('version')!r}, this release reads {version}")
    return doc


def scaler_to_dict(scaler: preprocessing.StandardScaler) -> dict[str, dict[str, float]]:
    return {"counts": dict(scaler.counts), "means": dict(scaler.means), "vars": dict(scaler.vars)}


def scaler_from_dict(doc: Mapping[str, Mapping[str, float]]) -> preprocessing.StandardScaler:
    scaler = preprocessing.StandardScaler()
    for name in ("counts", "means", "vars"):
        getattr(scaler, name).update(doc[name])
    return scaler
