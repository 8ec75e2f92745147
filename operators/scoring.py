"""One user's scoring inside a batch: features at a time, segment (anti-flapping), tags,
delayed labels, and the change event when anything moved; with marks to roll a user back when
an event's processing raised. ``operators.pipeline`` drives it over a batch."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TypeVar

from operators.changes import UserChanged, user_changed
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
from operators.labels import Label, settle_labels
from operators.segments import (
    SegmentSnapshot,
    choose_segment,
    segment_distances,
    segment_reason,
)
from operators.tags import (
    PendingLabel,
    TagDefinition,
    TagModel,
    holds,
    tag_reason,
)


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    segment_features: tuple[str, ...]  # the features the trainer learns segments from
    train_sample_permille: int  # share of users whose data trains the models, in ‰
    switch_margin: float = 0.25  # anti-flapping: see operators.segments.choose_segment
    switch_after: int = 3
    late_grace_ms: int = 3_600_000  # events older than the watermark by more are late
    rescore_interval_ms: int = DAY_MS  # a quiet user is re-scored this often (event time)
    max_idle_ms: int = 400 * DAY_MS  # ...until idle this long; then their segment stays
    tags: tuple[TagDefinition, ...] = ()
    alert_tags: tuple[str, ...] = ("churn_risk",)  # entering one of these raises an alert
    label_every_ms: int = 7 * DAY_MS  # a sampled user opens a tag's label at most this often


@dataclass(slots=True)
class BatchOutcome:
    states: dict[str, UserState] = field(default_factory=dict)  # only users that changed
    changes: list[UserChanged] = field(default_factory=list)
    alerts: list[tuple[UserChanged, str]] = field(default_factory=list)  # (change, tag entered)
    training_vectors: list[dict[str, float]] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    pending: dict[str, list[PendingLabel]] = field(default_factory=dict)  # changed users only
    late: list[tuple[Event, int]] = field(default_factory=list)  # (event, watermark it missed)
    failed: list[tuple[Event, str]] = field(default_factory=list)  # (event, exception class)
    failed_rescorings: list[tuple[str, str]] = field(default_factory=list)  # (user, class)
    dues: dict[str, int] = field(default_factory=dict)  # next re-scoring time; 0: none
    watermark_ms: int = 0
    processed_by_type: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    rescored: int = 0


@cache
def _label_features(config: PipelineConfig) -> tuple[str, ...]:
    """Every feature the predictive tags' labels keep."""
    return tuple(
        dict.fromkeys(f for t in config.tags if t.kind == "predictive" for f in t.features)
    )


@cache
def _scored_features(config: PipelineConfig) -> tuple[str, ...]:
    """Every feature one scoring needs: the segment model's and the tags'."""
    names = list(config.segment_features)
    for tag in config.tags:
        names += [tag.feature] if tag.kind == "rule" else list(tag.features)
    return tuple(dict.fromkeys(names))


V = TypeVar("V")


def _restore(mapping: dict[str, V], key: str, value: V | None) -> None:
    if value is None:
        mapping.pop(key, None)
    else:
        mapping[key] = value


@dataclass(frozen=True, slots=True)
class Mark:
    user_id: str
    state: UserState | None
    pending: list[PendingLabel] | None
    due: int | None
    changes: int
    alerts: int
    vectors: int
    labels: int
    watermark_ms: int
    rescored: int


@dataclass(slots=True)
class Scorer:
    snapshot: SegmentSnapshot | None
    config: PipelineConfig
    tag_models: Mapping[str, TagModel]
    pending_in: Mapping[str, Sequence[PendingLabel]]
    out: BatchOutcome
    # Looked up once per batch: hashing the config on every scoring cost ~10% of the batch.
    scored_features: tuple[str, ...] = ()
    label_features: tuple[str, ...] = ()
    digests: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scored_features = _scored_features(self.config)
        self.label_features = _label_features(self.config)

    def digest(self, user_id: str) -> int:
        found = self.digests.get(user_id)
        if found is None:
            found = self.digests[user_id] = user_digest(user_id)
        return found

    def apply(self, event: Event, stored: UserState | None) -> None:
        """One event that is not late: dedupe, catch up, update features, score."""
        config, out = self.config, self.out
        out.watermark_ms = max(out.watermark_ms, event.ts_ms - config.late_grace_ms)
        before = out.states.get(event.user_id) or stored
        digest = event_digest(event.event_id)
        if before is not None and digest in before.recent_event_ids:
            out.duplicates += 1  # a redelivery or a producer retry
            return
        if before is not None:
            before = self.catch_up(event.user_id, before, event.ts_ms)
        state = update_features(before, event, digest)
        # The training sample is of users, not events (heavy users would dominate), chosen by a
        # stable digest of the user id; a sampled user offers a vector at most once a day.
        first_today = before is None or before.last_seen_ms // DAY_MS < event.ts_ms // DAY_MS
        state = self.score(
            event.user_id,
            state,
            event.ts_ms,
            event.event_id,
            before=before,
            train=first_today,
            next_due_ms=state.last_seen_ms + config.rescore_interval_ms,
            purchase_ms=event.ts_ms if event.type == "purchase" else None,
        )
        out.states[event.user_id] = state
        out.dues[event.user_id] = state.next_due_ms
        out.processed_by_type[event.type] += 1

    def mark(self, user_id: str) -> Mark:
        """What ``rollback`` needs to undo everything one user's step adds to the outcome."""
        out = self.out
        return Mark(
            user_id,
            out.states.get(user_id),
            out.pending.get(user_id),
            out.dues.get(user_id),
            len(out.changes),
            len(out.alerts),
            len(out.training_vectors),
            len(out.labels),
            out.watermark_ms,
            out.rescored,
        )

    def rollback(self, mark: Mark) -> None:
        out = self.out
        _restore(out.states, mark.user_id, mark.state)
        _restore(out.pending, mark.user_id, mark.pending)
        _restore(out.dues, mark.user_id, mark.due)
        del out.changes[mark.changes :], out.alerts[mark.alerts :]
        del out.training_vectors[mark.vectors :], out.labels[mark.labels :]
        out.watermark_ms, out.rescored = mark.watermark_ms, mark.rescored

    def catch_up(self, user_id: str, state: UserState, until_ms: int) -> UserState:
        """Run the user's re-scorings due at or before ``until_ms``, each at its due time."""
        while state.next_due_ms and state.next_due_ms <= until_ms:
            due = state.next_due_ms
            follow = due + self.config.rescore_interval_ms
            if follow - state.last_seen_ms > self.config.max_idle_ms:
                follow = 0  # idle for good: stop re-scoring (the record expires by TTL)
            state = self.score(
                user_id,
                state,
                due,
                f"rescore:{due}",
                before=state,
                train=True,
                next_due_ms=follow,
                purchase_ms=None,
            )
            self.out.rescored += 1
        return state

    def reassign(self, user_id: str, state: UserState, watermark_ms: int) -> UserState:
        """Score a user whose segment was retired now (at the watermark, or their last event
        if later), keeping their re-scoring schedule."""
        assert self.snapshot is not None
        return self.score(
            user_id,
            state,
            max(watermark_ms, state.last_seen_ms),
            f"reassign:v{self.snapshot.version}",
            before=state,
            train=False,
            next_due_ms=state.next_due_ms,
            purchase_ms=None,
        )

    def score(
        self,
        user_id: str,
        state: UserState,
        at_ms: int,
        cause: str,
        *,
        before: UserState | None,
        train: bool,
        next_due_ms: int,
        purchase_ms: int | None,
    ) -> UserState:
        """Segment and tags at ``at_ms``; record changes, alerts, labels, a training vector.

        ``before`` is the user as they were just before this scoring's event (``state`` itself
        for a re-scoring, None for a new user): labels are opened from it.
        """
        config, out = self.config, self.out
        every = features_at(state, at_ms, self.scored_features)
        features = {name: every[name] for name in config.segment_features}
        digest = self.digest(user_id)
        sampled = digest % 1000 < config.train_sample_permille
        if train and sampled:
            out.training_vectors.append(features)
        segment, pending, streak = state.segment, state.pending_segment, state.pending_streak
        if self.snapshot is not None and self.snapshot.centers:
            segment, pending, streak = choose_segment(
                state.segment,
                segment_distances(self.snapshot, features),
                state.pending_segment,
                state.pending_streak,
                config.switch_margin,
                config.switch_after,
            )
        tag_bits, scores = state.tags, {}
        logs = {f: math.log1p(max(v, 0.0)) for f, v in every.items()} if self.tag_models else None
        for index, tag in enumerate(config.tags):
            had = bool(state.tags >> index & 1)
            has, score = holds(tag, had, every, self.tag_models.get(tag.name), logs)
            tag_bits = tag_bits | 1 << index if has else tag_bits & ~(1 << index)
            if score is not None:
                scores[tag.name] = score
        if sampled and self.label_features:  # there are predictive tags
            current = out.pending.get(user_id)
            if current is None:
                current = list(self.pending_in.get(user_id, ()))
            kept = settle_labels(
                config.tags,
                config.label_every_ms,
                self.label_features,
                current,
                out.labels,
                digest,
                at_ms,
                purchase_ms,
                before,
            )
            if kept != current:
                out.pending[user_id] = kept
        seq = state.seq
        if segment != state.segment or tag_bits != state.tags:
            seq += 1
            before_tags, after_tags = self._names(state.tags), self._names(tag_bits)
            reason: dict[str, tuple[str, ...]] = {}
            if segment != state.segment and self.snapshot is not None:
                reason["segment"] = segment_reason(self.snapshot, features, state.segment, segment)
            for index, tag in enumerate(config.tags):
                was, now = bool(state.tags >> index & 1), bool(tag_bits >> index & 1)
                if was != now:
                    reason[tag.name] = tag_reason(tag, now, every, self.tag_models.get(tag.name))
            change = user_changed(
                user_id=user_id,
                seq=seq,
                before=state.segment,
                after=segment,
                tags_before=before_tags,
                tags_after=after_tags,
                tag_scores=scores,
                model_version=self.snapshot.version if self.snapshot else 0,
                event_id=cause,
                event_time_ms=at_ms,
                features=features,
                reason=reason,
            )
            out.changes.append(change)
            out.alerts += [(change, t) for t in change.tags_added if t in config.alert_tags]
        return rescored(
            state,
            segment=segment,
            pending_segment=pending,
            pending_streak=streak,
            seq=seq,
            next_due_ms=next_due_ms,
            tags=tag_bits,
        )

    def _names(self, bits: int) -> tuple[str, ...]:
        return tuple(t.name for i, t in enumerate(self.config.tags) if bits >> i & 1)
