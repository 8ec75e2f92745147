"""Step 5 of a batch: the per-user decisions, moment by moment in order, from the scores.

Anti-flapping (``operators.segments.switch_segment``, the rule the evaluation measures), tag
hysteresis (from the bit sets of ``operators.scores``) and change detection, then for sampled
users the training vectors and delayed labels (``operators.steps.samples``). Cheap integer
work per moment, and only for the users whose segment or tags can move; the expensive parts
were done for the whole batch at once. A user whose decisions raise (a bug) is left as stored, with
nothing published.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from operators.changes import UserChanged, user_changed
from operators.columns import Matrix
from operators.compiled import compiled
from operators.decisions import Context, Decisions
from operators.erasure import EraseRequest
from operators.features import NO_SEGMENT, TAG_SLOTS
from operators.segments import segment_reason, switch_segment
from operators.steps.samples import offer_samples
from operators.tags import TagDefinition, tag_reason
from operators.timeline import ERASE, EVENT, EXPIRE, REASSIGN, RESCORE, Rows

Ints = npt.NDArray[np.int64]


def decide(c: Context) -> Decisions:
    records, extra = c.table.records, len(c.table.users) - c.table.stored

    def column(name: str, fill: int) -> Ints:
        return np.concatenate([records[name].astype(np.int64), np.full(extra, fill, np.int64)])

    n = len(c.table.users)
    out = Decisions(
        column("segment", NO_SEGMENT),
        column("pending_segment", NO_SEGMENT),
        column("pending_streak", 0),
        column("tags", 0),
        column("seq", 0),
        np.zeros(n, dtype=np.bool_),
        np.zeros(n, dtype=np.int64),
    )
    moments, scores, config = c.moments, c.scores, c.config
    busy, skipped = _busy_moments(c, out)
    count = len(moments.row)
    kind_of = np.zeros(count, dtype=np.int64)  # what each moment did: _SAME, _CHANGE, _REMOVE
    # Each change's segment and tags, before and after it.
    before = np.zeros((count, 4), dtype=np.int64)
    seq = np.zeros(count, dtype=np.int64)  # the change's seq
    removed = np.zeros(count, dtype=np.int64)  # rows removed, in order
    ids = np.fromiter(scores.column, dtype=np.int64)
    column_of = np.full(int(ids.max()) + 2 if len(ids) else 1, -1, dtype=np.int64)
    column_of[ids] = np.fromiter(scores.column.values(), dtype=np.int64)
    distances = scores.distances if len(ids) else np.zeros((count, 1))
    gone = _decide_moments(
        np.asarray(busy, dtype=np.int64),
        moments.array("row"),
        moments.array("kind"),
        scores.best if len(ids) else np.zeros(count, dtype=np.int64),
        scores.best_distance if len(ids) else np.zeros(count),
        np.ascontiguousarray(distances),
        column_of,
        len(ids) > 0,
        scores.enter,
        scores.stay,
        config.switch_margin,
        config.switch_after,
        out.segment,
        out.pending_segment,
        out.streak,
        out.tags,
        out.seq,
        out.scored,
        out.rescorings,
        skipped,
        kind_of,
        before,
        seq,
        removed,
    )
    out.removed = removed[:gone].tolist()
    names = _TagNames(config.tags)
    # Change events for the moments that moved something, in order (few: built in Python).
    for m in np.flatnonzero(kind_of).tolist():
        row = moments.row[m]
        if row in out.broken:
            continue
        was, tags = int(before[m, 0]), int(before[m, 1])
        try:
            if kind_of[m] == _REMOVE:
                out.changes.append(_removal(c, m, row, was, tags, int(seq[m]), names))
                continue
            chosen, now_tags = int(before[m, 2]), int(before[m, 3])
            if now_tags != tags:
                _note_entries(c, out, row, tags, now_tags, moments.at_ms[m])
            change = _change(c, m, row, was, chosen, tags, now_tags, int(seq[m]), names)
            out.changes.append(change)
            out.alerts += [(change, t) for t in change.tags_added if t in config.alert_tags]
        except Exception as exc:  # left as stored; its events are dead-lettered by the caller
            out.broken[row] = type(exc).__name__
    offer_samples(c, out, skipped)
    if out.broken:
        _drop_broken(out, c.table)
    return out


def _note_entries(c: Context, out: Decisions, row: int, was: int, now: int, at_ms: int) -> None:
    """Each tag's entry time: the moment's for a tag entered, 0 for one left."""
    slots = out.tags_entered.get(row)
    if slots is None:
        stored = row < c.table.stored
        slots = c.table.records["tags_entered"][row].tolist() if stored else [0] * TAG_SLOTS
        out.tags_entered[row] = slots
    for bit in range(TAG_SLOTS):
        if not now >> bit & 1:
            slots[bit] = 0
        elif not was >> bit & 1:
            slots[bit] = max(at_ms // 1000, 1)  # 0 means unknown


def _busy_moments(c: Context, out: Decisions) -> tuple[list[int], npt.NDArray[np.bool_]]:
    """The moments the loop must decide one by one, in order; the others are applied here.
    Also which moments are no-op reassignments (as far as known before the loop).

    Most moments are re-scorings of quiet users that change nothing: the nearest segment is
    the stored one and hysteresis keeps the tags. A user none of whose moments could change
    anything ends the batch with its segment and tags as stored, so its moments are settled
    at once from the arrays.
    """
    moments, scores = c.moments, c.scores
    rows, kinds = moments.array("row"), moments.array("kind")
    if not moments.row:
        return [], np.zeros(0, dtype=np.bool_)
    segment, tags = out.segment[rows], out.tags[rows]
    moving = ((tags & scores.stay) | (scores.enter & ~tags)) != tags
    moving |= kinds >= EXPIRE
    skipped = kinds == REASSIGN  # a no-op for a user whose segment the model has
    if scores.column:
        moving |= scores.best != segment
        skipped &= np.isin(segment, np.fromiter(scores.column, dtype=np.int64))
    else:
        skipped[:] = False
    busy_rows = np.zeros(len(out.segment), dtype=np.bool_)
    busy_rows[rows[moving]] = True
    busy = busy_rows[rows]
    settled = ~busy & ~skipped
    quiet = rows[settled]
    out.scored[quiet] = True
    if scores.column:  # the nearest segment is the user's: nothing pending
        out.pending_segment[quiet], out.streak[quiet] = NO_SEGMENT, 0
    np.add.at(out.rescorings, rows[settled & (kinds != EVENT)], 1)
    return np.flatnonzero(busy).tolist(), skipped & ~busy  # the kernel finds the busy no-ops


_SAME, _CHANGE, _REMOVE = 0, 1, 2


@compiled
def _decide_moments(
    busy: Ints,
    rows: Ints,
    kinds: Ints,
    best: Ints,
    best_distance: Matrix,
    distances: Matrix,
    column_of: Ints,
    has_model: bool,
    enter: Ints,
    stay: Ints,
    margin: float,
    switch_after: int,
    segment: Ints,
    pending: Ints,
    streak: Ints,
    tags: Ints,
    seq: Ints,
    scored: npt.NDArray[np.bool_],
    rescorings: Ints,
    skipped: npt.NDArray[np.bool_],
    kind_of: Ints,
    before: Ints,
    seq_of: Ints,
    removed: Ints,
) -> int:
    """The busy moments, in order: anti-flapping (``switch_segment``), tag hysteresis, and
    which moments change or remove a user. Updates the rows' fields; returns the rows removed."""
    gone = 0
    for m in busy:
        row, kind = rows[m], kinds[m]
        current, held = segment[row], tags[row]
        if kind >= EXPIRE:  # the user's last moment: its state goes, with a last change event
            seq[row] += 1
            kind_of[m], seq_of[m] = _REMOVE, seq[row]
            before[m, 0], before[m, 1] = current, held
            removed[gone] = row
            gone += 1
            continue
        known = has_model and 0 <= current < len(column_of) and column_of[current] >= 0
        if kind == REASSIGN and known:
            skipped[m] = True
            continue  # only users with no segment or one the model retired move now
        if not has_model:
            chosen, waiting, count = current, pending[row], streak[row]
        elif not known:  # none yet, or one the model retired
            chosen, waiting, count = best[m], NO_SEGMENT, 0
        else:
            closer = distances[m, column_of[current]] - best_distance[m]
            chosen, waiting, count = switch_segment(
                current, best[m], closer, pending[row], streak[row], margin, switch_after
            )
        now = (held & stay[m]) | (enter[m] & ~held)
        if chosen != current or now != held:
            seq[row] += 1
            kind_of[m], seq_of[m] = _CHANGE, seq[row]
            before[m, 0], before[m, 1], before[m, 2], before[m, 3] = current, held, chosen, now
        segment[row], pending[row], streak[row], tags[row] = chosen, waiting, count, now
        scored[row] = True
        if kind != EVENT:
            rescorings[row] += 1
    return gone


def _change(
    c: Context,
    m: int,
    row: int,
    segment: int,
    chosen: int,
    tags: int,
    now_tags: int,
    seq: int,
    names: _TagNames,
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
        tags_before=names[tags],
        tags_after=names[now_tags],
        tag_scores=c.scores.tag_scores(m),
        model_version=snapshot.version if snapshot else 0,
        event_id=cause,
        event_time_ms=at_ms,
        features=features,
        reason=reason,
    )


def _removal(
    c: Context, m: int, row: int, segment: int, tags: int, seq: int, names: _TagNames
) -> UserChanged:
    """The change event of a user whose state is removed: no segment, no tags after it."""
    at_ms, snapshot = c.moments.at_ms[m], c.snapshot
    why, cause = "expired", f"expired:{at_ms}"
    request: dict[str, str | int | bool] = {}
    if c.moments.kind[m] == ERASE:
        erase = c.events[c.moments.event[m]]
        assert isinstance(erase, EraseRequest)
        why, cause = "erased", erase.event_id
        request = {
            "requested_by": erase.requested_by,
            "via": erase.via,
            "requested_at_ms": erase.ts_ms,
            "found": c.moments.version[m] >= 0,
        }
    return user_changed(
        user_id=c.table.users[row],
        seq=seq,
        before=segment,
        after=NO_SEGMENT,
        tags_before=names[tags],
        tags_after=(),
        tag_scores={},
        model_version=snapshot.version if snapshot else 0,
        event_id=cause,
        event_time_ms=at_ms,
        features={},
        removed=why,
        request=request,
    )


class _TagNames(dict[int, tuple[str, ...]]):
    """The names of the tags set in a bit set, computed once per batch and bit set."""

    def __init__(self, tags: tuple[TagDefinition, ...]) -> None:
        super().__init__()
        self.tags = tags

    def __missing__(self, bits: int) -> tuple[str, ...]:
        names = self[bits] = tuple(t.name for i, t in enumerate(self.tags) if bits >> i & 1)
        return names


def _drop_broken(out: Decisions, table: Rows) -> None:
    """Remove everything the broken users' decisions produced."""
    users = {table.users[row] for row in out.broken}
    out.changes = [ch for ch in out.changes if ch.user_id not in users]
    out.alerts = [(ch, tag) for ch, tag in out.alerts if ch.user_id not in users]
    keep = [i for i, row in enumerate(out.vector_rows) if row not in out.broken]
    out.training_vectors = out.training_vectors[keep]
    out.vector_rows = [out.vector_rows[i] for i in keep]
    rows = out.label_rows
    out.labels = [lb for lb, row in zip(out.labels, rows, strict=True) if row not in out.broken]
    for user in users:
        out.pending.pop(user, None)
    broken = list(out.broken)
    out.scored[broken], out.rescorings[broken] = False, 0
    out.removed = [row for row in out.removed if row not in out.broken]
