"""The per-batch transition: user states, events and due users in; new states, changes out.

This is the one place to read what happens to an event after decoding:

1. an event older than the partition's watermark (the latest event time seen minus a grace) is
   *late*: it is set aside for the late topic, untouched;
2. a redelivered duplicate is dropped;
3. re-scorings the user had due before the event's time run first (step 6);
4. ``update_features`` → ``features_at`` → ``choose_segment`` (anti-flapping) → a
   ``SegmentChanged`` when the segment moved;
5. the user's next re-scoring is scheduled ``rescore_interval`` after the event;
6. after the events, users whose re-scoring is due by the watermark are re-scored at their due
   time, as if a clock event had arrived then: this is how a user who went quiet leaves a
   segment without sending anything.

Every time comes from events (``ts``) or from the watermark derived from them, never from the
wall clock, and late events are never applied: a replay gives the answers the live run gave.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from operators.changes import SegmentChanged, segment_changed
from operators.events import Event
from operators.features import (
    DAY_MS,
    UserState,
    event_digest,
    features_at,
    rescored,
    update_features,
    user_digest,
)
from operators.segments import SegmentSnapshot, choose_segment, segment_distances


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    segment_features: tuple[str, ...]  # the features the trainer learns segments from
    train_sample_permille: int  # share of users whose feature vectors train the model, in ‰
    switch_margin: float = 0.25  # anti-flapping: see operators.segments.choose_segment
    switch_after: int = 3
    late_grace_ms: int = 3_600_000  # events older than the watermark by more are late
    rescore_interval_ms: int = DAY_MS  # a quiet user is re-scored this often (event time)
    max_idle_ms: int = 400 * DAY_MS  # ...until idle this long; then their segment stays


@dataclass(slots=True)
class BatchOutcome:
    states: dict[str, UserState] = field(default_factory=dict)  # only users that changed
    changes: list[SegmentChanged] = field(default_factory=list)
    training_vectors: list[dict[str, float]] = field(default_factory=list)
    late: list[Event] = field(default_factory=list)
    dues: dict[str, int] = field(default_factory=dict)  # next re-scoring time; 0: none
    watermark_ms: int = 0
    processed_by_type: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    rescored: int = 0


def advance_watermark(watermark_ms: int, events: Iterable[Event], late_grace_ms: int) -> int:
    """The watermark after ``events``, as ``process_events`` will move it (late ones do not)."""
    for event in events:
        if event.ts_ms >= watermark_ms:
            watermark_ms = max(watermark_ms, event.ts_ms - late_grace_ms)
    return watermark_ms


def process_events(
    states: Mapping[str, UserState | None],
    events: Iterable[Event],
    snapshot: SegmentSnapshot | None,
    config: PipelineConfig,
    watermark_ms: int = 0,
    due_users: Iterable[str] = (),
) -> BatchOutcome:
    """Apply ``events`` in order, then the due re-scorings. Pure: the inputs stay untouched.

    ``watermark_ms`` is the partition's watermark before the batch; ``due_users`` are users the
    state store indexed as due by the watermark after it (a superset is harmless).
    """
    out = BatchOutcome(watermark_ms=watermark_ms)
    for event in events:
        if event.ts_ms < out.watermark_ms:
            out.late.append(event)
            continue
        out.watermark_ms = max(out.watermark_ms, event.ts_ms - config.late_grace_ms)
        before = out.states.get(event.user_id) or states.get(event.user_id)
        digest = event_digest(event.event_id)
        if before is not None and digest in before.recent_event_ids:
            out.duplicates += 1  # a redelivery or a producer retry
            continue
        if before is not None:
            before = _catch_up(event.user_id, before, event.ts_ms, snapshot, config, out)
        state = update_features(before, event, digest)
        # The training sample is of users, not events (heavy users would dominate), chosen by a
        # stable digest of the user id; a sampled user offers a vector at most once a day.
        first_today = before is None or before.last_seen_ms // DAY_MS < event.ts_ms // DAY_MS
        state = _score(event.user_id, state, event.ts_ms, event.event_id, snapshot, config, out,
                       train=first_today,
                       next_due_ms=state.last_seen_ms + config.rescore_interval_ms)
        out.states[event.user_id] = state
        out.dues[event.user_id] = state.next_due_ms
        out.processed_by_type[event.type] += 1
    # Users whose re-scoring fell due by the new watermark: those the store indexed, and those
    # this batch touched (their due times were set or moved here).
    for user_id in dict.fromkeys([*due_users, *out.states]):
        stored = out.states.get(user_id) or states.get(user_id)
        if stored is None:
            out.dues[user_id] = 0  # expired or erased: drop it from the index
            continue
        if stored.next_due_ms and stored.next_due_ms <= out.watermark_ms:
            stored = out.states[user_id] = _catch_up(
                user_id, stored, out.watermark_ms, snapshot, config, out)
        out.dues[user_id] = stored.next_due_ms  # the index follows the record, always
    return out


def _catch_up(
    user_id: str, state: UserState, until_ms: int, snapshot: SegmentSnapshot | None,
    config: PipelineConfig, out: BatchOutcome,
) -> UserState:
    """Run the user's re-scorings due at or before ``until_ms``, each at its due time."""
    while state.next_due_ms and state.next_due_ms <= until_ms:
        due = state.next_due_ms
        follow = due + config.rescore_interval_ms
        if follow - state.last_seen_ms > config.max_idle_ms:
            follow = 0  # idle for good: stop re-scoring (the record expires by TTL)
        state = _score(user_id, state, due, f"rescore:{due}", snapshot, config, out, train=True,
                       next_due_ms=follow)
        out.rescored += 1
    return state


def _score(
    user_id: str, state: UserState, at_ms: int, cause: str, snapshot: SegmentSnapshot | None,
    config: PipelineConfig, out: BatchOutcome, *, train: bool, next_due_ms: int,
) -> UserState:
    """Assign the user's segment at ``at_ms``, recording a change and a training vector;
    schedule the next re-scoring at ``next_due_ms``."""
    features = features_at(state, at_ms, config.segment_features)
    if train and user_digest(user_id) % 1000 < config.train_sample_permille:
        out.training_vectors.append(features)
    if snapshot is None or not snapshot.centers:
        return rescored(state, segment=state.segment, pending_segment=state.pending_segment,
                        pending_streak=state.pending_streak, seq=state.seq,
                        next_due_ms=next_due_ms)
    segment, pending, streak = choose_segment(
        state.segment, segment_distances(snapshot, features), state.pending_segment,
        state.pending_streak, config.switch_margin, config.switch_after)
    seq = state.seq
    if segment != state.segment:
        seq += 1
        out.changes.append(segment_changed(
            user_id=user_id, seq=seq, before=state.segment, after=segment,
            model_version=snapshot.version, event_id=cause, event_time_ms=at_ms,
            features=features))
    return rescored(state, segment=segment, pending_segment=pending, pending_streak=streak,
                    seq=seq, next_due_ms=next_due_ms)
