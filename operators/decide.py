"""Step 5 of a batch: the per-user decisions, moment by moment in order, from the scores.

Anti-flapping (``operators.segments.choose_segment``'s rule), tag hysteresis (from the bit
sets of ``operators.scores``), change detection, and for sampled users the training vectors and
delayed labels. Cheap integer work per moment; the expensive parts were done for the whole
batch at once. A user whose decisions raise (a bug) is left as stored, with nothing published.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from operators.changes import UserChanged, user_changed
from operators.columns import LAST, Matrix, version_features
from operators.events import Event
from operators.features import NO_SEGMENT, user_digest
from operators.labels import Label, first_deadline, label_grid, settle_labels
from operators.pending import PendingLabel, pending_summary, unpack_pending
from operators.scores import Scores
from operators.scoring import PipelineConfig
from operators.segments import SegmentSnapshot, segment_reason
from operators.tags import TagModel, tag_reason
from operators.timeline import EVENT, REASSIGN, RESCORE, Moments, Table


@dataclass(slots=True)
class Decisions:
    """The scoring fields of every row after the batch, and what the decisions produced."""

    segment: list[int]
    pending_segment: list[int]
    streak: list[int]
    tags: list[int]
    seq: list[int]
    scored: set[int] = field(default_factory=set)  # rows with at least one scoring applied
    changes: list[UserChanged] = field(default_factory=list)
    alerts: list[tuple[UserChanged, str]] = field(default_factory=list)
    training_vectors: list[dict[str, float]] = field(default_factory=list)
    labels: list[Label] = field(default_factory=list)
    pending: dict[str, list[PendingLabel]] = field(default_factory=dict)
    rescorings: Counter[int] = field(default_factory=Counter)  # per row
    broken: dict[int, str] = field(default_factory=dict)  # row -> exception class
    vector_rows: list[int] = field(default_factory=list)  # the row of each training vector
    label_rows: list[int] = field(default_factory=list)  # ... and of each released label
    open_labels: dict[int, list[PendingLabel]] = field(default_factory=dict)  # decoded
    quiet_until: dict[int, int] = field(default_factory=dict)  # row -> first label deadline


@dataclass(frozen=True, slots=True)
class Context:
    """What every decision of a batch reads."""

    table: Table
    moments: Moments
    scores: Scores
    versions: Matrix  # every version row of the batch (``Table.versions``)
    events: Sequence[Event]
    snapshot: SegmentSnapshot | None
    config: PipelineConfig
    tag_models: Mapping[str, TagModel]
    pending_in: Mapping[str, bytes]  # the users' stored pending labels
    labelled: tuple[str, ...]  # the features the labels keep (none: no predictive tag)


def decide(c: Context) -> Decisions:
    records, extra = c.table.records, len(c.table.users) - c.table.stored
    out = Decisions(
        records["segment"].tolist() + [NO_SEGMENT] * extra,
        records["pending_segment"].tolist() + [NO_SEGMENT] * extra,
        records["pending_streak"].tolist() + [0] * extra,
        records["tags"].tolist() + [0] * extra,
        records["seq"].tolist() + [0] * extra,
    )
    moments, scores, config = c.moments, c.scores, c.config
    column, best, best_distance = scores.column, scores.best, scores.best_distance
    distances, enter, stay = scores.distances, scores.enter, scores.stay
    margin, switch_after = config.switch_margin, config.switch_after
    labelled = bool(c.labelled)
    sampled = _sampled(c)  # row -> user digest, for the sampled users
    for m in _busy_moments(c, out, sampled):
        row = moments.row[m]
        if row in out.broken:
            continue
        segment, tags, kind = out.segment[row], out.tags[row], moments.kind[m]
        if kind == REASSIGN and segment in column:
            continue  # only users with no segment or one the model retired move now
        try:
            if column:
                nearest = int(best[m])
                if nearest == segment or segment not in column:
                    chosen, pending, streak = nearest, NO_SEGMENT, 0
                else:
                    streak = out.streak[row] + 1 if out.pending_segment[row] == nearest else 1
                    closer = float(distances[m, column[segment]] - best_distance[m])
                    if closer > margin or streak >= switch_after:
                        chosen, pending, streak = nearest, NO_SEGMENT, 0
                    else:
                        chosen, pending = segment, nearest
            else:
                chosen, pending, streak = segment, out.pending_segment[row], out.streak[row]
            now_tags = (tags & int(stay[m])) | (int(enter[m]) & ~tags)
            digest_or_none = sampled.get(row)
            if digest_or_none is not None:
                if moments.train[m] and kind != REASSIGN:
                    out.training_vectors.append(scores.row(m, config.segment_features))
                    out.vector_rows.append(row)
                if labelled:
                    released = len(out.labels)
                    _settle(c, out, m, row, digest_or_none)
                    out.label_rows += [row] * (len(out.labels) - released)
            if chosen != segment or now_tags != tags:
                out.seq[row] += 1
                change = _change(c, m, row, segment, chosen, tags, now_tags, out.seq[row])
                out.changes.append(change)
                out.alerts += [(change, t) for t in change.tags_added if t in config.alert_tags]
            out.segment[row], out.pending_segment[row], out.streak[row] = chosen, pending, streak
            out.tags[row] = now_tags
            out.scored.add(row)
            if kind != EVENT:
                out.rescorings[row] += 1
        except Exception as exc:  # left as stored; its events are dead-lettered by the caller
            out.broken[row] = type(exc).__name__
    if out.broken:
        _drop_broken(out, c.table)
    return out


def _sampled(c: Context) -> dict[int, int]:
    """The batch's sampled users (they offer training vectors and labels): row -> digest."""
    permille, users = c.config.train_sample_permille, c.table.users
    digests = {row: user_digest(users[row]) for row in set(c.moments.row)}
    return {row: digest for row, digest in digests.items() if digest % 1000 < permille}


def _busy_moments(c: Context, out: Decisions, sampled: Mapping[int, int]) -> list[int]:
    """The moments the loop must decide one by one, in order; the others are applied here.

    Most moments are re-scorings of quiet users that change nothing: the nearest segment is
    the stored one and hysteresis keeps the tags. A user none of whose moments could change
    anything, and who is not sampled (no training vector, no label), ends the batch with its
    segment and tags as stored, so its moments are settled at once from the arrays.
    """
    moments, scores = c.moments, c.scores
    if not moments.row:
        return []
    rows = np.asarray(moments.row, dtype=np.int64)
    kinds = np.asarray(moments.kind, dtype=np.int64)
    segment = np.asarray(out.segment, dtype=np.int64)[rows]
    tags = np.asarray(out.tags, dtype=np.int64)[rows]
    moving = ((tags & scores.stay) | (scores.enter & ~tags)) != tags
    skipped = kinds == REASSIGN  # a no-op for a user whose segment the model has
    if scores.column:
        moving |= scores.best != segment
        skipped &= np.isin(segment, np.fromiter(scores.column, dtype=np.int64))
    else:
        skipped[:] = False
    busy_rows = np.zeros(len(out.segment), dtype=np.bool_)
    busy_rows[rows[moving]] = True
    busy_rows[list(sampled)] = True
    busy = busy_rows[rows]
    settled = ~busy & ~skipped
    for row in np.unique(rows[settled]).tolist():
        out.scored.add(row)
        if scores.column:  # the nearest segment is the user's: nothing pending
            out.pending_segment[row], out.streak[row] = NO_SEGMENT, 0
    out.rescorings.update(rows[settled & (kinds != EVENT)].tolist())
    return np.flatnonzero(busy).tolist()


def _settle(c: Context, out: Decisions, m: int, row: int, digest: int) -> None:
    user, before, at_ms = c.table.users[row], c.moments.before[m], c.moments.at_ms[m]
    purchase_ms = c.moments.purchase_ms[m]
    last_seen = int(c.versions[before, LAST]) if before >= 0 else None
    current = out.open_labels.get(row)
    if current is None:
        packed = c.pending_in.get(user, b"")
        summary = pending_summary(packed, c.config.tags) if packed else (2**62, -1)
        if summary is not None and not purchase_ms and at_ms <= summary[0]:
            # No label can move yet; unless one opens now, leave them undecoded.
            grid = label_grid(at_ms, digest, c.config.label_every_ms)
            if last_seen is None or grid < last_seen or summary[1] >= grid:
                return
        current = out.open_labels[row] = unpack_pending(packed) if packed else []
        out.quiet_until[row] = first_deadline(c.config.tags, current)
    kept = settle_labels(
        c.config.tags,
        c.config.label_every_ms,
        c.labelled,
        current,
        out.labels,
        digest,
        at_ms,
        purchase_ms or None,
        last_seen,
        partial(version_features, c.versions[before]),
        out.quiet_until[row],
    )
    if kept is not current and kept != current:
        out.pending[user] = out.open_labels[row] = kept
        out.quiet_until[row] = first_deadline(c.config.tags, kept)


def _change(
    c: Context, m: int, row: int, segment: int, chosen: int, tags: int, now_tags: int, seq: int
) -> UserChanged:
    config, snapshot, kind = c.config, c.snapshot, c.moments.kind[m]
    at_ms = c.moments.at_ms[m]
    every = c.scores.row(m, c.scores.names)
    features = {name: every[name] for name in config.segment_features}
    reason: dict[str, tuple[str, ...]] = {}
    if chosen != segment and snapshot is not None:
        reason["segment"] = segment_reason(snapshot, features, segment, chosen)
    for bit, tag in enumerate(config.tags):
        was, now = bool(tags >> bit & 1), bool(now_tags >> bit & 1)
        if was != now:
            reason[tag.name] = tag_reason(tag, now, every, c.tag_models.get(tag.name))
    if kind == EVENT:
        cause = c.events[c.moments.event[m]].event_id
    elif kind == RESCORE:
        cause = f"rescore:{at_ms}"
    else:
        cause = f"reassign:v{snapshot.version if snapshot else 0}"
    return user_changed(
        user_id=c.table.users[row],
        seq=seq,
        before=segment,
        after=chosen,
        tags_before=_names(config, tags),
        tags_after=_names(config, now_tags),
        tag_scores=c.scores.tag_scores(m),
        model_version=snapshot.version if snapshot else 0,
        event_id=cause,
        event_time_ms=at_ms,
        features=features,
        reason=reason,
    )


def _names(config: PipelineConfig, bits: int) -> tuple[str, ...]:
    return tuple(t.name for i, t in enumerate(config.tags) if bits >> i & 1)


def _drop_broken(out: Decisions, table: Table) -> None:
    """Remove everything the broken users' decisions produced."""
    users = {table.users[row] for row in out.broken}
    out.changes = [ch for ch in out.changes if ch.user_id not in users]
    out.alerts = [(ch, tag) for ch, tag in out.alerts if ch.user_id not in users]
    keep = [i for i, row in enumerate(out.vector_rows) if row not in out.broken]
    out.training_vectors = [out.training_vectors[i] for i in keep]
    rows = out.label_rows
    out.labels = [lb for lb, row in zip(out.labels, rows, strict=True) if row not in out.broken]
    for user in users:
        out.pending.pop(user, None)
    out.scored -= set(out.broken)
    for row in out.broken:
        out.rescorings.pop(row, None)
