"""The per-batch transition: user states, events and due users in; new states, changes out.

This is the one place to read what happens to an event after decoding:

1. an event older than the partition's watermark (the latest event time seen minus a grace) is
   *late*: it is set aside for the late topic, untouched;
2. a redelivered duplicate is dropped;
3. re-scorings the user had due before the event's time run first (step 6);
4. ``update_features`` → scoring (``operators.scoring.Scorer.score``): ``features_at`` →
   ``choose_segment`` (anti-flapping) → each tag (rules, predictive models with hysteresis) →
   delayed labels resolved and new ones opened → a ``UserChanged`` when the segment or the
   tags moved, and an alert when an alerting tag (``churn_risk``) was entered;
5. the user's next re-scoring is scheduled ``rescore_interval`` after the event;
6. after the events, users whose re-scoring is due by the watermark are re-scored at their due
   time, as if a clock event had arrived then: this is how a user who went quiet leaves a
   segment, or enters ``churn_risk``, without sending anything;
7. users named in ``reassign`` who hold a segment the model no longer has (it was retired) are
   scored at the watermark and take the nearest segment at once.

Every time comes from events (``ts``) or from the watermark derived from them, never from the
wall clock, and late events are never applied: a replay gives the answers the live run gave.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from operators.events import Event
from operators.features import NO_SEGMENT, UserState
from operators.scoring import BatchOutcome, PipelineConfig, Scorer
from operators.segments import SegmentSnapshot
from operators.tags import PendingLabel, TagModel

__all__ = ["BatchOutcome", "PipelineConfig", "advance_watermark", "process_events"]


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
    tag_models: Mapping[str, TagModel] | None = None,
    pending: Mapping[str, Sequence[PendingLabel]] | None = None,
    reassign: Iterable[str] = (),
) -> BatchOutcome:
    """Apply ``events`` in order, then the due re-scorings. Pure: the inputs stay untouched.

    ``watermark_ms`` is the partition's watermark before the batch; ``due_users`` are users the
    state store indexed as due by the watermark after it (a superset is harmless);
    ``pending`` holds the users' open labels; ``reassign``: users to move out of segments the
    snapshot retired.
    """
    batch = Scorer(
        snapshot, config, tag_models or {}, pending or {}, BatchOutcome(watermark_ms=watermark_ms)
    )
    out = batch.out
    for event in events:
        if event.ts_ms < out.watermark_ms:
            out.late.append((event, out.watermark_ms))
            continue
        mark = batch.mark(event.user_id)
        try:
            batch.apply(event, states.get(event.user_id))
        except Exception as exc:  # one event's bug must not stop the stream: dead-letter it
            batch.rollback(mark)
            out.failed.append((event, type(exc).__name__))
    # Users whose re-scoring fell due by the new watermark: those the store indexed, and those
    # this batch touched (their due times were set or moved here).
    for user_id in dict.fromkeys([*due_users, *out.states]):
        stored = out.states.get(user_id) or states.get(user_id)
        if stored is None:
            out.dues[user_id] = 0  # expired or erased: drop it from the index
            continue
        if stored.next_due_ms and stored.next_due_ms <= out.watermark_ms:
            mark = batch.mark(user_id)
            try:
                stored = out.states[user_id] = batch.catch_up(user_id, stored, out.watermark_ms)
            except Exception as exc:  # left as it was, and out of the index until its next event
                batch.rollback(mark)
                out.failed_rescorings.append((user_id, type(exc).__name__))
                out.dues[user_id] = 0
                continue
        out.dues[user_id] = stored.next_due_ms  # the index follows the record, always
    current = set(snapshot.segment_ids) if snapshot is not None and snapshot.centers else set()
    for user_id in reassign if current else ():
        stored = out.states.get(user_id) or states.get(user_id)
        if stored is None or stored.segment == NO_SEGMENT or stored.segment in current:
            continue
        mark = batch.mark(user_id)
        try:
            out.states[user_id] = batch.reassign(user_id, stored, out.watermark_ms)
            out.rescored += 1
        except Exception as exc:  # left in the retired segment until its next scoring
            batch.rollback(mark)
            out.failed_rescorings.append((user_id, type(exc).__name__))
    return out
