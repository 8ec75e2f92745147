"""Published facts: a user's segment changed.

``change_id`` is derived from the inputs only (user, triggering event, before, after, model
version), so a replay after a crash re-sends the same ids and consumers can drop repeats.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from operators.features import NO_SEGMENT


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
