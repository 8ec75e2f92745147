"""Step 5, second part: what the sampled users offer the learners.

A uniform sample of users (by user digest, ``SEGSTREAM_TRAIN_SAMPLE_PERMILLE``) offers a
training vector at each moment that trains, and their predictive tags' delayed labels: a
label opens at the user's label time, is resolved when its horizon ends or a purchase comes,
and waits meanwhile in the user's pending labels (``operators.pending``). Both follow from
event times only, not from the decisions, so they are taken for the whole batch here, in
moment order. Most moments can neither open nor resolve a label; a user's stored summary says
so without decoding its labels, for all moments at once.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import numpy.typing as npt

from operators.columns import LAST, version_features
from operators.decisions import Context, Decisions
from operators.features import user_digest
from operators.labels import first_deadline, label_phase, settle_labels
from operators.pending import pending_summary, unpack_pending
from operators.timeline import EXPIRE, REASSIGN

_FAR = 2**62


def offer_samples(c: Context, out: Decisions, skipped: npt.NDArray[np.bool_]) -> None:
    """Training vectors and labels of the sampled users' moments (``skipped``: moments that
    did nothing, no-op reassignments), in moment order."""
    sampled = _sampled(c)
    if not sampled:
        return
    moments = c.moments
    rows = moments.array("row")
    is_sampled = np.zeros(len(c.table.users), dtype=np.bool_)
    is_sampled[list(sampled)] = True
    kinds = moments.array("kind")
    live = is_sampled[rows] & ~skipped & (kinds < EXPIRE)  # removals offer nothing
    if c.labelled:
        visits, deadline, taken = _label_moments(c, sampled, live)
        for m, at, grid, purchase, may_open in visits:
            row = moments.row[m]
            # Quiet by the row's labels as they stand now: skip without decoding them.
            if not purchase and at <= deadline[row] and (not may_open or taken[row] >= grid):
                continue
            if row in out.broken:
                continue
            released = len(out.labels)
            try:
                _settle(c, out, m, row, sampled[row])
            except Exception as exc:  # left as stored, like a decision that raises
                out.broken[row] = type(exc).__name__
            out.label_rows += [row] * (len(out.labels) - released)
            current = out.open_labels.get(row)
            if current is not None:
                deadline[row] = out.quiet_until[row]
                taken[row] = current[-1].at_ms if current else -1
    trains = np.flatnonzero(live & (moments.array("train") == 1) & (kinds != REASSIGN))
    columns = [c.scores.names.index(name) for name in c.config.segment_features]
    if out.broken:
        trains = trains[~np.isin(rows[trains], np.fromiter(out.broken, dtype=np.int64))]
    out.training_vectors = c.scores.features[trains][:, columns]
    out.vector_rows = rows[trains].tolist()


def _stored_labels(c: Context, row: int) -> bytes:
    """The row's labels as stored; none for a row with no stored record (a new user, or one
    that came back after it expired in this batch)."""
    return c.pending_in.get(c.table.users[row], b"") if row < c.table.stored else b""


def _sampled(c: Context) -> dict[int, int]:
    """The batch's sampled users: row -> user digest."""
    permille, users = c.config.train_sample_permille, c.table.users
    digests = {row: user_digest(users[row]) for row in set(c.moments.row)}
    return {row: digest for row, digest in digests.items() if digest % 1000 < permille}


def _label_moments(
    c: Context, sampled: dict[int, int], live: npt.NDArray[np.bool_]
) -> tuple[list[tuple[int, int, int, int, bool]], dict[int, int], dict[int, int]]:
    """The sampled moments a label may open or resolve at, in order, from each user's first
    such moment on, as (moment, time, label grid time, purchase time, may open by time); and
    per row, the earliest end of a stored label's horizon and the latest label time.

    A moment is quiet when it is no purchase, no horizon of a label has ended (the earliest
    deadline), and no label opens: the user's label time at or before the moment is not after
    its last event before it, or a label was taken there. Before a user's first moment that is
    not, the stored summary says so for all moments at once; after it, the caller checks each
    moment against the labels as ``settle_labels`` left them.
    """
    moments, every = c.moments, c.config.label_every_ms
    n = len(c.table.users)
    deadline, taken = np.full(n, _FAR, dtype=np.int64), np.full(n, -1, dtype=np.int64)
    phase = np.zeros(n, dtype=np.int64)
    for row, digest in sampled.items():
        packed = _stored_labels(c, row)
        summary = pending_summary(packed, c.config.tags) if packed else (_FAR, -1)
        # No summary (a record from before summaries): decode from the first moment on.
        deadline[row], taken[row] = summary if summary is not None else (-_FAR, -1)
        phase[row] = label_phase(digest, every)
    index = np.flatnonzero(live)
    rows = moments.array("row")[index]
    at = moments.array("at_ms")[index]
    purchase = moments.array("purchase_ms")[index]
    before = moments.array("before")[index]
    last_seen = np.where(before >= 0, c.versions[np.maximum(before, 0), LAST], -_FAR)
    grid = at - (at - phase[rows]) % every
    quiet = (
        (purchase == 0)
        & (at <= deadline[rows])
        & ((before < 0) | (grid < last_seen) | (taken[rows] >= grid))
    )
    first = np.full(n, len(moments.row), dtype=np.int64)
    np.minimum.at(first, rows[~quiet], index[~quiet])
    keep = index >= first[rows]
    may_open = (before >= 0) & (grid >= last_seen)
    visits = list(
        zip(
            index[keep].tolist(),
            at[keep].tolist(),
            grid[keep].tolist(),
            purchase[keep].tolist(),
            may_open[keep].tolist(),
            strict=True,
        )
    )
    rows_kept = np.unique(rows[keep]).tolist()
    return (
        visits,
        dict(zip(rows_kept, deadline[rows_kept].tolist(), strict=True)),
        dict(zip(rows_kept, taken[rows_kept].tolist(), strict=True)),
    )


def _settle(c: Context, out: Decisions, m: int, row: int, digest: int) -> None:
    user, before, at_ms = c.table.users[row], c.moments.before[m], c.moments.at_ms[m]
    purchase_ms = c.moments.purchase_ms[m]
    last_seen = int(c.versions[before, LAST]) if before >= 0 else None
    current = out.open_labels.get(row)
    if current is None:
        packed = _stored_labels(c, row)
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
