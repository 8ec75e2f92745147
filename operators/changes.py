"""Published facts: a user's segment or tags changed; segments were created, retired or merged.

``change_id`` is derived from the inputs only (user, triggering event, before, after, model
version), so a replay after a crash re-sends the same ids and consumers can drop repeats.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from operators.features import NO_SEGMENT
from operators.matching import Lineage
from operators.segments import SegmentSnapshot, segment_profiles


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~1.5 us (see Event)
class UserChanged:
    """A user's segment or tags changed. Segments are None before the first assignment."""

    change_id: str
    user_id: str
    seq: int
    segment_before: int | None
    segment_after: int | None
    tags_before: tuple[str, ...]
    tags_after: tuple[str, ...]
    tag_scores: tuple[tuple[str, float], ...]  # predictive tags scored this time
    model_version: int
    event_id: str
    event_time_ms: int
    features: tuple[tuple[str, float], ...]  # the features that placed the user
    # Why: "segment" and each tag that moved, with the features that moved it, strongest first.
    reason: tuple[tuple[str, tuple[str, ...]], ...] = ()
    removed: str = ""  # "expired" or "erased": the user's state was removed with this change
    request: tuple[tuple[str, str | int | bool], ...] = ()  # an erasure's: who, how, when

    @property
    def held_nothing(self) -> bool:
        """An erasure where the partition kept no state for the user: the request goes to
        every partition (producers' partitioners differ), so this is audited, not published."""
        return self.removed == "erased" and not dict(self.request).get("found", False)

    @property
    def tags_added(self) -> tuple[str, ...]:
        return tuple(t for t in self.tags_after if t not in self.tags_before)

    @property
    def tags_removed(self) -> tuple[str, ...]:
        return tuple(t for t in self.tags_before if t not in self.tags_after)


def user_changed(
    *,
    user_id: str,
    seq: int,
    before: int,
    after: int,
    tags_before: tuple[str, ...],
    tags_after: tuple[str, ...],
    tag_scores: dict[str, float],
    model_version: int,
    event_id: str,
    event_time_ms: int,
    features: dict[str, float],
    reason: dict[str, tuple[str, ...]] | None = None,
    removed: str = "",
    request: dict[str, str | int | bool] | None = None,
) -> UserChanged:
    segment_before = None if before == NO_SEGMENT else before
    segment_after = None if after == NO_SEGMENT else after
    identity = "\x1f".join(
        map(
            str,
            (user_id, event_id, segment_before, segment_after, ",".join(tags_after), model_version),
        )
    )
    return UserChanged(
        change_id=hashlib.blake2b(identity.encode(), digest_size=16).hexdigest(),
        user_id=user_id,
        seq=seq,
        segment_before=segment_before,
        segment_after=segment_after,
        tags_before=tags_before,
        tags_after=tags_after,
        tag_scores=tuple((name, round(score, 6)) for name, score in tag_scores.items()),
        model_version=model_version,
        event_id=event_id,
        event_time_ms=event_time_ms,
        features=tuple((name, round(value, 6)) for name, value in features.items()),
        reason=tuple((reason or {}).items()),
        removed=removed,
        request=tuple((request or {}).items()),
    )


def encode_change(
    change: UserChanged, emitted_at_ms: int, names: Mapping[int, str] | None = None
) -> bytes:
    """The JSON published on the change topic (schema in docs/contract.md, "Change events out");
    ``names``: the segments' names at the time, by id."""
    if change.removed:
        return _encode_removal(change, emitted_at_ms)
    names = names or {}
    scores = dict(change.tag_scores)
    return orjson.dumps(
        {
            "kind": "user_changed",
            "change_id": change.change_id,
            "user_id": change.user_id,
            "seq": change.seq,
            "segment_before": change.segment_before,
            "segment_after": change.segment_after,
            "segment_name": names.get(change.segment_after)
            if change.segment_after is not None
            else None,
            "tags": list(change.tags_after),
            "tags_added": {t: scores.get(t) for t in change.tags_added},
            "tags_removed": {t: scores.get(t) for t in change.tags_removed},
            "tag_scores": scores,
            "model_version": change.model_version,
            "event_id": change.event_id,
            "event_time_ms": change.event_time_ms,
            "emitted_at_ms": emitted_at_ms,
            "features": dict(change.features),
            "reason": {
                "segment": list(dict(change.reason).get("segment", ())),
                "tags": {name: list(why) for name, why in change.reason if name != "segment"},
            },
        },
    )


def _encode_removal(change: UserChanged, emitted_at_ms: int) -> bytes:
    """``user_expired`` or ``user_erased``: the user's state was removed; only what placed it
    is said, and for an erasure the request (who asked, how, when; whether a record existed)."""
    return orjson.dumps(
        {
            **dict(change.request),
            "kind": f"user_{change.removed}",
            "change_id": change.change_id,
            "user_id": change.user_id,
            "seq": change.seq,
            "segment_before": change.segment_before,
            "tags_before": list(change.tags_before),
            "model_version": change.model_version,
            "event_id": change.event_id,
            "event_time_ms": change.event_time_ms,
            "emitted_at_ms": emitted_at_ms,
        },
    )


def encode_membership(change: UserChanged) -> bytes | None:
    """The user's current segment and tags after ``change``: the value on the compacted
    membership topic, keyed by user id, whose latest record per key is the whole assignment
    (schema in docs/contract.md, "Membership topic"). Only the change's own fields: a re-sent batch
    writes the same bytes. A removed user's is a tombstone (None): compaction forgets it."""
    if change.removed:
        return None
    return orjson.dumps(
        {
            "kind": "membership",
            "user_id": change.user_id,
            "segment": change.segment_after,
            "tags": list(change.tags_after),
            "seq": change.seq,
            "model_version": change.model_version,
            "event_time_ms": change.event_time_ms,
            "change_id": change.change_id,
        },
    )


def encode_alert(change: UserChanged, tag: str, emitted_at_ms: int) -> bytes:
    """A churn alert (or any alerting tag's): the user just entered ``tag``."""
    return orjson.dumps(
        {
            "kind": "tag_entered",
            "alert_id": change.change_id,
            "tag": tag,
            "user_id": change.user_id,
            "score": dict(change.tag_scores).get(tag),
            "segment": change.segment_after,
            "model_version": change.model_version,
            "event_id": change.event_id,
            "event_time_ms": change.event_time_ms,
            "emitted_at_ms": emitted_at_ms,
        },
    )


def lineage_events(
    lineage: Lineage,
    snapshot: SegmentSnapshot,
    emitted_at_ms: int,
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


def republished_event(snapshot: SegmentSnapshot, lost_version: int, emitted_at_ms: int) -> bytes:
    """Lineage: the state store lost the model, and its trainer published it again, unchanged
    but for a higher version (versions never go backwards; segment ids keep their meaning)."""
    return json.dumps(
        {
            "kind": "model_republished",
            "change_id": hashlib.blake2b(
                f"republished\x1f{snapshot.version}".encode(), digest_size=16
            ).hexdigest(),
            "model_version": snapshot.version,
            "republishes_version": lost_version,
            "segments": list(snapshot.segment_ids),
            "emitted_at_ms": emitted_at_ms,
        },
        separators=(",", ":"),
    ).encode()
