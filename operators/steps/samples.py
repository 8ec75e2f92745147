"""Step 5, second part: what the sampled users offer the learners, over arrays.

A uniform sample of users (by user digest, ``SEGSTREAM_TRAIN_SAMPLE_PERMILLE``) offers a
training vector at each moment that trains, and their predictive tags' delayed labels. Both
follow from event times only, not from the decisions, so they are taken for the whole batch
here, in moment order.

``operators.labels.settle_labels`` states the labels' rule for one scoring; a kernel compiled
by numba applies the same rule to every sampled moment of the batch in order (a property test
holds the two equal). The batch's labels live in one arena of arrays, a region per sampled
user, filled from the stored bytes (``operators.pending``, parsed in the kernel too) and
written back as bytes only for the users whose labels moved. A label's half-precision logs
never steer the rule, so the arena carries a reference to them (a stored label's, or those of
a label opened here, computed afterwards for all the batch's openings at once) and they are
looked up at the end. Most moments can neither open nor resolve a label: the stored summary
(the earliest end of a horizon, the latest label time) says so without touching the labels.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Final

import numpy as np
import numpy.typing as npt

from operators.columns import LAST, feature_matrix, log1p_clipped
from operators.compiled import compiled
from operators.decisions import Context, Decisions
from operators.features import user_digest
from operators.labels import Label
from operators.tags import PURCHASE_WITHIN
from operators.timeline import EXPIRE, REASSIGN

__all__ = ["offer_samples"]

Ints = npt.NDArray[np.int64]
Bytes = npt.NDArray[np.uint8]
Halves = npt.NDArray[np.uint16]

_FAR: Final = 2**62
_MINUTE_MS: Final = 60_000
_NONE: Final = 0xFFFFFFFF  # no label of this tag, in the stored summary
_MARKER: Final = 0x80  # a stored summary's first byte (a label starts with its tag, below 8)
_HEAD: Final = 7  # a stored label: tag, state (0 open, 1 + value), minute (u32), count
# Why a user's labels could not be read, as the error's class name (the user is left as stored).
_UNREADABLE, _UNKNOWN_TAG = 1, 2
_ERRORS: Final = {_UNREADABLE: "error", _UNKNOWN_TAG: "IndexError"}
# User digests, kept for the users seen lately (a blake2b per user per batch costs more).
_digest = lru_cache(maxsize=1 << 18)(user_digest)


def offer_samples(c: Context, out: Decisions, skipped: npt.NDArray[np.bool_]) -> None:
    """Training vectors and labels of the sampled users' moments (``skipped``: moments that
    did nothing, no-op reassignments), in moment order."""
    moments, n = c.moments, len(c.table.users)
    rows, kinds = moments.array("row"), moments.array("kind")
    sampled, phase = _sampled(c, n)
    if not sampled.any():
        return
    live = sampled[rows] & ~skipped & (kinds < EXPIRE)  # removals offer nothing
    if out.broken:
        live &= ~np.isin(rows, np.fromiter(out.broken, dtype=np.int64))
    if c.labelled:
        _labels(c, out, live, sampled, phase)
    trains = np.flatnonzero(live & (moments.array("train") == 1) & (kinds != REASSIGN))
    columns = [c.scores.names.index(name) for name in c.config.segment_features]
    if out.broken:
        trains = trains[~np.isin(rows[trains], np.fromiter(out.broken, dtype=np.int64))]
    out.training_vectors = c.scores.features[trains][:, columns]
    out.vector_rows = rows[trains].tolist()


def _sampled(c: Context, n: int) -> tuple[npt.NDArray[np.bool_], Ints]:
    """Which rows are sampled, and each sampled row's label phase."""
    permille, every = c.config.train_sample_permille, c.config.label_every_ms
    digests = np.fromiter(map(_digest, c.table.users), dtype=np.uint64, count=n)
    sampled = digests % np.uint64(1000) < np.uint64(permille)
    minutes = np.uint64(every // _MINUTE_MS)
    phase = (digests % minutes).astype(np.int64) * _MINUTE_MS  # operators.labels.label_phase
    return sampled, phase


def _labels(
    c: Context,
    out: Decisions,
    live: npt.NDArray[np.bool_],
    sampled: npt.NDArray[np.bool_],
    phase: Ints,
) -> None:
    """Settle the sampled moments' labels: released ones to ``out.labels``, the users' labels
    that moved to ``out.pending`` in their stored form."""
    moments, table, tags = c.moments, c.table, c.config.tags
    n = len(table.users)
    visits = np.flatnonzero(live)
    rows = moments.array("row")[visits]
    before = moments.array("before")[visits]
    last_seen = np.where(
        before >= 0, c.versions[np.maximum(before, 0), LAST].astype(np.int64), -_FAR
    )
    # The stored labels of the sampled rows that have some, as one buffer.
    stored_rows = [
        row
        for row in np.flatnonzero(sampled[: table.stored]).tolist()
        if c.pending_in.get(table.users[row])
    ]
    blobs = [c.pending_in[table.users[row]] for row in stored_rows]
    sizes = np.array([len(b) for b in blobs], dtype=np.int64)
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    buffer = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    # A region per row: room for its stored labels, and for every tag opening at every visit.
    room = np.zeros(n, dtype=np.int64)
    room[stored_rows] = sizes // _HEAD
    room += np.bincount(rows, minlength=n) * len(tags)
    start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(room, out=start[1:])
    arena = np.zeros((int(start[-1]), 4), dtype=np.int64)  # tag, at_ms, value (-1 open), logs
    width = max((len(t.features) for t in tags), default=0)
    logs = np.zeros(
        (int(sizes.sum()) // _HEAD + len(visits) * len(tags) + 1, max(width, 1)), np.uint16
    )
    log_count = np.zeros(len(logs), dtype=np.int64)
    count = np.zeros(n, dtype=np.int64)
    deadline = np.full(n, _FAR, dtype=np.int64)
    taken = np.full(n, -1, dtype=np.int64)
    error = np.zeros(n, dtype=np.int64)
    horizon = np.array([t.horizon_ms for t in tags], dtype=np.int64)
    stored_logs = _parse(
        buffer,
        offsets,
        np.asarray(stored_rows, dtype=np.int64),
        start,
        count,
        arena,
        logs,
        log_count,
        deadline,
        taken,
        error,
        horizon,
    )
    released = np.zeros((len(arena), 6), dtype=np.int64)  # row, tag, at, learned, value, logs
    opened = np.zeros((len(visits) * len(tags) + 1, 3), dtype=np.int64)  # before, grid, tag
    dirty = np.zeros(n, dtype=np.bool_)
    releases, openings = _settle(
        rows,
        moments.array("at_ms")[visits],
        moments.array("purchase_ms")[visits],
        before,
        last_seen,
        phase,
        c.config.label_every_ms,
        deadline,
        taken,
        start,
        count,
        arena,
        error,
        horizon,
        np.array([t.kind == "predictive" for t in tags], dtype=np.bool_),
        np.array([t.label == PURCHASE_WITHIN for t in tags], dtype=np.int64),
        stored_logs,
        released,
        opened,
        dirty,
        np.zeros(n, dtype=np.bool_),
    )
    for row in np.flatnonzero(error < 0).tolist():  # visited, unreadable: left as stored
        out.broken[row] = _ERRORS[-int(error[row])]
    _opened_logs(c, opened[:openings], logs, log_count, stored_logs)
    values = logs.view(np.float16).astype(np.float64)
    for row, tag, at_ms, learned_ms, value, ref in released[:releases].tolist():
        out.labels.append(
            Label(tag, at_ms, learned_ms, tuple(values[ref, : log_count[ref]].tolist()), value)
        )
        out.label_rows.append(row)
    moved = np.flatnonzero(dirty & (error >= 0))
    ends = np.zeros(len(moved) + 1, dtype=np.int64)
    packed = np.zeros(_packed_size(moved, start, count, arena, log_count, ends), dtype=np.uint8)
    _pack(moved, start, count, arena, logs, log_count, ends, packed)
    data = packed.tobytes()
    users = table.users
    for i, row in enumerate(moved.tolist()):
        out.pending[users[row]] = data[ends[i] : ends[i + 1]]
        out.labels_moved.append(row)


def _opened_logs(c: Context, opened: Ints, logs: Halves, log_count: Ints, first: int) -> None:
    """The logs of each label opened in the batch (at ``first`` on in ``logs``): log1p of the
    tag's features at its grid time, from the version before the scoring that opened it, in
    half precision, for all of them at once (``operators.columns``, the formulas' array form)."""
    if not len(opened):
        return
    tags, names = c.config.tags, c.labelled
    values = log1p_clipped(
        feature_matrix(c.versions[opened[:, 0]], opened[:, 1].astype(np.float64), names)
    )
    halves = values.astype(np.float16).view(np.uint16)
    tag_of = opened[:, 2]
    for tag in np.unique(tag_of).tolist():
        mine = np.flatnonzero(tag_of == tag)
        columns = [names.index(f) for f in tags[tag].features]
        logs[first + mine, : len(columns)] = halves[mine][:, columns]
        log_count[first + mine] = len(columns)


@compiled
def _u32(buffer: Bytes, at: int) -> int:
    return (
        int(buffer[at])
        | int(buffer[at + 1]) << 8
        | int(buffer[at + 2]) << 16
        | int(buffer[at + 3]) << 24
    )


@compiled
def _parse(
    buffer: Bytes,
    offsets: Ints,
    rows: Ints,
    start: Ints,
    count: Ints,
    arena: Ints,
    logs: Halves,
    log_count: Ints,
    deadline: Ints,
    taken: Ints,
    error: Ints,
    horizon: Ints,
) -> int:
    """Read each row's stored labels into its region (``operators.pending``'s form), and its
    summary into ``deadline`` and ``taken``; returns the number of stored labels' logs."""
    refs = 0
    for i in range(len(rows)):
        row, at, end = rows[i], offsets[i], offsets[i + 1]
        if buffer[at] == _MARKER:  # the summary
            tags = int(buffer[at + 1]) if at + 1 < end else 0
            if at + 6 + 4 * tags > end:
                error[row] = _UNREADABLE
                continue
            soonest = _FAR
            for tag in range(min(tags, len(horizon))):
                first = _u32(buffer, at + 2 + 4 * tag)
                if first != _NONE:
                    soonest = min(soonest, first * _MINUTE_MS + horizon[tag])
            deadline[row], taken[row] = soonest, _u32(buffer, at + 2 + 4 * tags) * _MINUTE_MS
            at += 6 + 4 * tags
        else:  # written before summaries: read from the first moment on
            deadline[row], taken[row] = -_FAR, -1
        slot = start[row]
        while at < end:
            if at + _HEAD > end:
                error[row] = _UNREADABLE
                break
            state, n = buffer[at + 1], buffer[at + 6]
            if at + _HEAD + 2 * n > end or n > logs.shape[1]:
                error[row] = _UNREADABLE
                break
            arena[slot, 0] = buffer[at]
            arena[slot, 1] = _u32(buffer, at + 2) * _MINUTE_MS
            arena[slot, 2] = int(state) - 1
            arena[slot, 3] = refs
            for k in range(n):
                low, high = buffer[at + _HEAD + 2 * k], buffer[at + _HEAD + 2 * k + 1]
                logs[refs, k] = int(low) | int(high) << 8
            log_count[refs] = n
            refs += 1
            slot += 1
            at += _HEAD + 2 * n
        count[row] = slot - start[row]
    return refs


@compiled
def _settle(
    rows: Ints,
    at_ms: Ints,
    purchase_ms: Ints,
    before: Ints,
    last_seen: Ints,
    phase: Ints,
    every: int,
    deadline: Ints,
    taken: Ints,
    start: Ints,
    count: Ints,
    arena: Ints,
    error: Ints,
    horizon: Ints,
    predictive: npt.NDArray[np.bool_],
    purchase_within: Ints,
    first_opened: int,
    released: Ints,
    opened: Ints,
    dirty: npt.NDArray[np.bool_],
    decoded: npt.NDArray[np.bool_],
) -> tuple[int, int]:
    """``settle_labels`` at each visit, in order: a visit is quiet (skipped without touching
    the labels) when it is no purchase, no horizon has ended (``deadline``), and no label
    opens (its grid time is before the user's last event, or was taken). Returns the numbers
    of labels released and opened. A row whose labels cannot be read gets a negative
    ``error`` at its first visit that is not quiet, and is skipped from then on."""
    releases, openings = 0, 0
    for v in range(len(rows)):
        row, at, purchase = rows[v], at_ms[v], purchase_ms[v]
        grid = at - (at - phase[row]) % every
        may_open = before[v] >= 0 and grid >= last_seen[v]
        if purchase == 0 and at <= deadline[row] and (not may_open or taken[row] >= grid):
            continue
        if error[row] < 0:
            continue
        s = start[row]
        if not decoded[row]:
            decoded[row] = True
            if error[row] > 0:
                error[row] = -error[row]
                continue
            for i in range(s, s + count[row]):
                if arena[i, 0] >= len(horizon):
                    error[row] = -_UNKNOWN_TAG
            if error[row] < 0:
                continue
            deadline[row] = _first_deadline(arena, s, count[row], horizon)
        n, moved = count[row], False
        if purchase != 0 or at > deadline[row]:
            kept = s
            for i in range(s, s + n):
                tag, then, value = arena[i, 0], arena[i, 1], arena[i, 2]
                h = horizon[tag]
                if value < 0:
                    if purchase != 0 and then < purchase <= then + h:
                        value = purchase_within[tag]
                    elif at > then + h:
                        value = 1 - purchase_within[tag]
                if value >= 0 and at > then + h:
                    released[releases, 0] = row
                    released[releases, 1], released[releases, 2] = tag, then
                    released[releases, 3], released[releases, 4] = at, value
                    released[releases, 5] = arena[i, 3]
                    releases += 1
                    moved = True
                    continue
                if value != arena[i, 2]:
                    moved = True
                arena[kept, 0], arena[kept, 1] = tag, then
                arena[kept, 2], arena[kept, 3] = value, arena[i, 3]
                kept += 1
            n = kept - s
        # Labels open in time order, every tag that can at once: one at this grid time means
        # this grid time is done.
        if may_open and not (n > 0 and arena[s + n - 1, 1] >= grid):
            for tag in range(len(horizon)):
                h = horizon[tag]
                if not predictive[tag] or at > grid + h:
                    continue
                value = -1
                if purchase != 0 and grid < purchase <= grid + h:
                    value = purchase_within[tag]
                slot = s + n
                arena[slot, 0], arena[slot, 1], arena[slot, 2] = tag, grid, value
                arena[slot, 3] = first_opened + openings
                opened[openings, 0], opened[openings, 1] = before[v], grid
                opened[openings, 2] = tag
                openings += 1
                n += 1
                moved = True
        count[row] = n
        if moved:
            dirty[row] = True
            deadline[row] = _first_deadline(arena, s, n, horizon)
        taken[row] = arena[s + n - 1, 1] if n > 0 else -1
    return releases, openings


@compiled
def _first_deadline(arena: Ints, s: int, n: int, horizon: Ints) -> int:
    """The earliest end of a horizon among a region's labels (the far future if none)."""
    soonest = _FAR
    for i in range(s, s + n):
        soonest = min(soonest, arena[i, 1] + horizon[arena[i, 0]])
    return soonest


@compiled
def _packed_size(
    rows: Ints, start: Ints, count: Ints, arena: Ints, log_count: Ints, ends: Ints
) -> int:
    """Each row's stored size: a summary (6 + 4 bytes a tag up to its highest), then 7 + 2
    bytes a feature per label; ``ends``: where each row's bytes end in the buffer."""
    total = 0
    for i in range(len(rows)):
        s, n = start[rows[i]], count[rows[i]]
        if n > 0:
            top = 0
            for j in range(s, s + n):
                top = max(top, arena[j, 0])
                total += _HEAD + 2 * log_count[arena[j, 3]]
            total += 6 + 4 * (top + 1)
        ends[i + 1] = total
    return total


@compiled
def _pack(
    rows: Ints,
    start: Ints,
    count: Ints,
    arena: Ints,
    logs: Halves,
    log_count: Ints,
    ends: Ints,
    out: Bytes,
) -> None:
    """Each row's labels in their stored form (``operators.pending.pack_pending``)."""
    for i in range(len(rows)):
        s, n, at = start[rows[i]], count[rows[i]], ends[i]
        if n == 0:
            continue
        top, last = 0, 0
        for j in range(s, s + n):
            top, last = max(top, arena[j, 0]), max(last, arena[j, 1] // _MINUTE_MS)
        out[at], out[at + 1] = _MARKER, top + 1
        for tag in range(top + 1):
            first = _NONE
            for j in range(s, s + n):
                if arena[j, 0] == tag:
                    first = min(first, arena[j, 1] // _MINUTE_MS)
            _put_u32(out, at + 2 + 4 * tag, first)
        _put_u32(out, at + 2 + 4 * (top + 1), last)
        at += 6 + 4 * (top + 1)
        for j in range(s, s + n):
            ref, k = arena[j, 3], log_count[arena[j, 3]]
            out[at], out[at + 1] = arena[j, 0], arena[j, 2] + 1
            _put_u32(out, at + 2, arena[j, 1] // _MINUTE_MS)
            out[at + 6] = k
            for f in range(k):
                out[at + _HEAD + 2 * f] = logs[ref, f] & 0xFF
                out[at + _HEAD + 2 * f + 1] = logs[ref, f] >> 8
            at += _HEAD + 2 * k


@compiled
def _put_u32(out: Bytes, at: int, value: int) -> None:
    for k in range(4):
        out[at + k] = (value >> (8 * k)) & 0xFF
