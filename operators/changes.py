"""Published facts: a user's segment changed; segments were created, retired or merged.

``change_id`` is derived from the inputs only (user, triggering event, before, after, model
version), so a replay after a crash re-sends the same ids and consumers can drop repeats.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from operators.features import NO_SEGMENT
from operators.matching import Lineage
from operators.segments import SegmentSnapshot, segment_profiles


@dataclass(frozen=True, slots=True)
class SegmentChanged:
    """A user moved from ``segment_before`` (None: first assignment) to ``segment_after``."""

    change_id: str
    user_id: str
    seq: int
    segment_before: int | None
    segment_after: int
    model_version: int
    event_id: str
    event_time_ms: int
    features: tuple[tuple[str, float], ...]


def segment_changed(
    *, user_id: str, seq: int, before: int, after: int, model_version: int, event_id: str,
    event_time_ms: int, features: dict[str, float],
) -> SegmentChanged:
    before_or_none = None if before == NO_SEGMENT else before
    identity = f"{user_id}\x1f{event_id}\x1f{before_or_none}\x1f{after}\x1f{model_version}"
    return SegmentChanged(
        change_id=hashlib.blake2b(identity.encode(), digest_size=16).hexdigest(),
        user_id=user_id, seq=seq, segment_before=before_or_none, segment_after=after,
        model_version=model_version, event_id=event_id, event_time_ms=event_time_ms,
        features=tuple((name, round(value, 6)) for name, value in features.items()),
    )


def encode_change(change: SegmentChanged, emitted_at_ms: int) -> bytes:
    """The JSON published on the change topic (schema in the README, "Change events")."""
    return json.dumps(
        {
            "kind": "segment_changed",
            "change_id": change.change_id,
            "user_id": change.user_id,
            "seq": change.seq,
            "segment_before": change.segment_before,
            "segment_after": change.segment_after,
            "model_version": change.model_version,
            "event_id": change.event_id,
            "event_time_ms": change.event_time_ms,
            "emitted_at_ms": emitted_at_ms,
            "features": dict(change.features),
        },
        separators=(",", ":"),
    ).encode()


def lineage_events(
    lineage: Lineage, snapshot: SegmentSnapshot, emitted_at_ms: int,
) -> list[tuple[bytes, bytes]]:
    """(key, value) per segment created, retired or merged by a new snapshot.

    Keyed ``segment:<id>``; ``change_id`` depends on the model version, kind and ids only, so a
    snapshot re-published after a crash repeats the same ids.
    """
    profiles = {p.segment: p for p in segment_profiles(snapshot)}
    facts: list[tuple[str, int, int | None]] = [
        *(("segment_created", s, None) for s in lineage.created),
        *(("segment_retired", s, None) for s in lineage.retired),
        *(("segment_merged", old, into) for old, into in lineage.merged),
    ]
    out = []
    for kind, segment, into in facts:
        identity = f"{kind}\x1f{snapshot.version}\x1f{segment}\x1f{into}"
        doc: dict[str, object] = {
            "kind": kind,
            "change_id": hashlib.blake2b(identity.encode(), digest_size=16).hexdigest(),
            "segment": segment,
            "model_version": snapshot.version,
            "emitted_at_ms": emitted_at_ms,
        }
        if into is not None:
            doc["merged_into"] = into
        if segment in profiles:
            profile = profiles[segment]
            doc["name"] = profile.name
            doc["share"] = round(profile.share, 6)
            doc["centroid"] = {k: round(v, 6) for k, v in profile.centroid.items()}
        out.append((f"segment:{segment}".encode(), json.dumps(doc, separators=(",", ":")).encode()))
    return out
