"""What segstream knows about one user, as a document (``segstream inspect``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from operators.features import FEATURES, NO_SEGMENT, UserState, features_at
from operators.segments import SegmentSnapshot, segment_profiles
from operators.tags import TagDefinition, TagModel, predict_one


def describe_user(
    user_id: str,
    state: UserState,
    at_ms: int,
    snapshot: SegmentSnapshot | None,
    tags: Sequence[TagDefinition],
    tag_models: Mapping[str, TagModel],
    names: Mapping[int, str] | None = None,
) -> dict[str, Any]:
    """The user's segment (id and name), tags with scores and entry times, ``seq``, last event
    time and every feature, evaluated at ``at_ms`` (the partition's watermark, or the last event
    if later).
    ``names``: the segments' names (default: those generated from ``snapshot``)."""
    at_ms = max(at_ms, state.last_seen_ms)
    features = features_at(state, at_ms, FEATURES)
    if names is None:
        names = {p.segment: p.name for p in segment_profiles(snapshot)} if snapshot else {}
    segment = (
        None
        if state.segment == NO_SEGMENT
        else {"id": state.segment, "name": names.get(state.segment)}
    )
    held = []
    for index, tag in enumerate(tags):
        if state.tags >> index & 1:
            model = tag_models.get(tag.name)
            score = predict_one(model, features) if tag.kind == "predictive" and model else None
            entered_s = state.tags_entered_s[index]
            held.append(
                {
                    "name": tag.name,
                    "score": None if score is None else round(score, 6),
                    "entered_at_ms": entered_s * 1000 if entered_s else None,  # None: unknown
                }
            )
    return {
        "user_id": user_id,
        "segment": segment,
        "tags": held,
        "seq": state.seq,
        "last_event_ms": state.last_seen_ms,
        "evaluated_at_ms": at_ms,
        "model_version": snapshot.version if snapshot else 0,
        "features": {name: round(value, 6) for name, value in features.items()},
    }
