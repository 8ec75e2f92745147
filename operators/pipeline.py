"""The per-batch transition: stored records, events and due users in; new records and changes
out. The one place to read what happens to an event after decoding, in six steps:

1. **decode** (``operators.decoding``, run by the shell): bytes to ``Event``s;
2. **dedupe and late** (``operators.steps.advance``): an event older than the partition's watermark
   (the latest event time seen minus a grace) is *late*, set aside for the late topic
   untouched; a redelivered duplicate is dropped;
3. **features** (``operators.steps.advance``): each event updates its user's record, in order, and
   notes the moments the user is scored at: the event itself, the re-scorings the user had due
   before it, and after the batch those due by the new watermark (a user who went quiet leaves
   a segment, or enters ``churn_risk``, without sending anything); users named in
   ``reassign`` whose segment the model retired are scored at the watermark;
4. **score** (``operators.scores``): every moment at once, as arrays: features at the moment's
   time, segment distances, tag probabilities;
5. **decide** (``operators.decide``): per user, moment by moment: anti-flapping, hysteresis, a
   ``UserChanged`` when the segment or the tags moved (an alert when an alerting tag was
   entered), training vectors and delayed labels of sampled users;
6. **emit**: the changed users' records, in their stored form, and their due times.

Every time comes from events (``ts``) or from the watermark derived from them, never from the
wall clock, and late events are never applied: a replay gives the answers the live run gave.
Batch boundaries change nothing: a moment is scored at its own time whatever batch holds it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from operators.columns import VERSION_FIELDS
from operators.decide import decide
from operators.decisions import Context, Decisions
from operators.events import Event
from operators.features import UserState
from operators.pending import PendingLabel, pack_pending, unpack_pending
from operators.record import (
    NEXT_DUE_AT,
    new_records,
    pack_state,
    read_records,
    set_recent_ids,
    unpack_state,
    with_next_due,
    write_records,
)
from operators.scores import score_moments
from operators.scoring import BatchOutcome, PipelineConfig, label_features, scored_features
from operators.segments import SegmentSnapshot
from operators.steps.advance import advance
from operators.tags import TagModel
from operators.timeline import (
    CATEGORY,
    COUNTS,
    FIRST,
    LAST,
    LAST_PURCHASE,
    RECENT,
    SPEND,
    Rows,
    Timeline,
)

_U32 = 2**32 - 1

__all__ = [
    "BatchOutcome",
    "PipelineConfig",
    "advance_watermark",
    "process_events",
    "run_batch",
    "warm_up",
]


def advance_watermark(watermark_ms: int, events: Iterable[Event], late_grace_ms: int) -> int:
    """The watermark after ``events``, as ``run_batch`` will move it (late ones do not)."""
    for event in events:
        if event.ts_ms >= watermark_ms:
            watermark_ms = max(watermark_ms, event.ts_ms - late_grace_ms)
    return watermark_ms


def run_batch(
    stored: Mapping[str, bytes],
    events: Sequence[Event],
    snapshot: SegmentSnapshot | None,
    config: PipelineConfig,
    watermark_ms: int = 0,
    due_users: Iterable[str] = (),
    tag_models: Mapping[str, TagModel] | None = None,
    pending: Mapping[str, bytes] | None = None,
    reassign: Iterable[str] = (),
) -> BatchOutcome:
    """Apply ``events`` in order, then the due re-scorings. Pure: the inputs stay untouched.

    ``stored`` holds the stored records of the events' users and of ``due_users`` (users the
    state store indexed as due by the watermark after the batch; a superset is harmless);
    ``watermark_ms`` is the partition's watermark before the batch; ``pending`` holds the
    users' open labels as stored; ``reassign``: users to move out of segments the snapshot retired.
    """
    users = list(stored)
    has_centers = snapshot is not None and bool(snapshot.centers)
    table, timeline = advance(
        users,
        read_records([stored[u] for u in users]),
        events,
        config,
        watermark_ms,
        due_users,
        reassign,
        has_centers,
    )
    moments = timeline.moments
    versions = table.versions
    # An erasure of a user with no record scores version -1: a row of zeros, read by nothing.
    known = np.vstack([versions, np.zeros((1, VERSION_FIELDS))])
    at_moments = known[moments.array("version")]
    scores = score_moments(
        at_moments,
        moments.array("at_ms"),
        scored_features(config),
        snapshot,
        config,
        tag_models or {},
    )
    decisions = decide(
        Context(
            table,
            moments,
            scores,
            versions,
            events,
            snapshot,
            config,
            tag_models or {},
            pending or {},
            label_features(config),
        )
    )
    return _emit(table, timeline, decisions, events)


def _emit(
    table: Rows, timeline: Timeline, decisions: Decisions, events: Sequence[Event]
) -> BatchOutcome:
    """Step 6: the outcome, with the changed users' records in their stored form."""
    out = BatchOutcome(
        changes=decisions.changes,
        alerts=decisions.alerts,
        training_vectors=decisions.training_vectors,
        labels=decisions.labels,
        pending=decisions.pending,
        late=timeline.late,
        failed=timeline.failed,
        dues=timeline.dues,
        watermark_ms=timeline.watermark_ms,
        processed_by_type=timeline.processed_by_type,
        duplicates=timeline.duplicates,
        rescored=int(decisions.rescorings.sum()),
    )
    broken = decisions.broken
    for row, error in broken.items():  # left as stored, out of the due index until an event
        user = table.users[row]
        moments = timeline.moments
        mine = [i for i, r in zip(moments.event, moments.row, strict=True) if r == row]
        failed = [(events[i], error) for i in mine if i >= 0]
        out.failed += failed
        if not failed:
            out.failed_rescorings.append((user, error))
        out.processed_by_type.subtract(e.type for e, _ in failed)
        out.dues[user] = 0
    _remove(table, decisions, out)
    updated = table.updated
    written = updated | decisions.scored
    written[list(broken)] = False
    written[decisions.removed] = False
    picked = np.flatnonzero(written)
    if not len(picked):
        return out
    records = new_records(len(picked))
    stored = picked < table.stored
    records[stored] = table.records[picked[stored]]
    changed = updated[picked]
    if changed.any():  # the fields events changed, from the rows (counters saturate, as stored)
        part, fields = records[changed], table.ints[picked[changed]]
        part["first_seen"] = fields[:, FIRST]
        part["last_seen"] = fields[:, LAST]
        part["last_purchase"] = fields[:, LAST_PURCHASE]
        part["counts"] = np.minimum(fields[:, COUNTS:RECENT], _U32)
        part["spend_cents"] = fields[:, SPEND]
        part["windows"] = table.windows[picked[changed]]
        part["category_bits"] = fields[:, CATEGORY]
        set_recent_ids(part, fields[:, RECENT:].astype(np.uint64))
        records[changed] = part
    records["next_due"] = table.next_due[picked]
    records["segment"] = decisions.segment[picked]
    records["pending_segment"] = decisions.pending_segment[picked]
    records["pending_streak"] = np.minimum(decisions.streak[picked], 255)
    records["tags"] = decisions.tags[picked]
    records["seq"] = np.minimum(decisions.seq[picked], _U32)
    if decisions.tags_entered:  # most batches move no tag
        moved = [row for row in decisions.tags_entered if written[row]]
        at = np.searchsorted(picked, moved)
        records["tags_entered"][at] = [decisions.tags_entered[row] for row in moved]
    # A re-scoring that moved nothing leaves the record as stored but for its next due time,
    # which the store sets in place from ``dues``: such records are not re-encoded or sent.
    kept = np.flatnonzero(stored & ~changed)
    if len(kept):
        new = records[kept].view(np.uint8).reshape(len(kept), -1).copy()
        old = table.records[picked[kept]].view(np.uint8).reshape(len(kept), -1)
        new[:, NEXT_DUE_AT : NEXT_DUE_AT + 8] = old[:, NEXT_DUE_AT : NEXT_DUE_AT + 8]
        rewrite = np.ones(len(picked), dtype=np.bool_)
        rewrite[kept[(new == old).all(axis=1)]] = False
        picked, records = picked[rewrite], records[rewrite]
    users = table.users
    out.records = dict(
        zip([users[r] for r in picked.tolist()], write_records(records), strict=True)
    )
    return out


def _remove(table: Rows, decisions: Decisions, out: BatchOutcome) -> None:
    """The expired and erased users' stored state goes: the store deletes it before writing
    the batch's records, so a user who came back in the same batch keeps its new record. Their
    open labels go too, unless the new user opened its own (written after the old one's, in
    moment order)."""
    moved = set(decisions.labels_moved)
    for row in decisions.removed:
        user = table.users[row]
        out.removed.append(user)
        if table.index.get(user) not in moved:
            out.pending[user] = b""


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
    """``run_batch`` on ``UserState``s: for tests and tools that hold records as objects.
    The outcome's ``states`` holds the changed users' records."""
    stored = {u: pack_state(s) for u, s in states.items() if s is not None}
    labels = {u: pack_pending(p) for u, p in (pending or {}).items()}
    out = run_batch(
        stored,
        list(events),
        snapshot,
        config,
        watermark_ms,
        due_users,
        tag_models,
        labels,
        reassign,
    )
    out.states = {u: unpack_state(b) for u, b in out.records.items()}
    removed = set(out.removed)
    for user, due in out.dues.items():  # as the store sets them: in place
        if user not in out.records and user in stored and user not in removed:
            out.states[user] = unpack_state(with_next_due(stored[user], due))
    out.open_labels = {u: unpack_pending(b) for u, b in out.pending.items()}
    return out


def warm_up() -> None:
    """Compile the batch's compiled steps now (a second or two each, the first time), rather
    than in the first batch: an image build or an install runs this once, and every process
    after it loads the machine code from numba's cache in milliseconds."""
    features = ("recency_days", "frequency", "monetary")
    snapshot = SegmentSnapshot(1, features, (0.0,) * 3, (1.0,) * 3, ((0.0,) * 3, (1.0,) * 3))
    config = PipelineConfig(features, 1000)
    at = 1_767_225_600_000
    events = [
        Event("warm-1", "warm", "view", at),
        Event("warm-2", "warm", "purchase", at + 1, 10.0),
    ]
    process_events({}, events, snapshot, config, reassign=["warm"])
