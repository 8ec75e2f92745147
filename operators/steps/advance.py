"""Steps 2 and 3 of a batch in one compiled pass: dedupe and late events, each event's feature
update in order, and every moment a user must be scored at.

The only sequential step: a user's record after an event depends on the record before it. It
runs over columns, never a Python object per event or per user: the batch's records as two
arrays (integers and window sums), a row per record state a user goes through, and the events
as arrays; a kernel compiled by numba walks the events in order. Each event that is neither
late nor a redelivery updates its user's row with the arithmetic of
``operators.features.update_record``, in the same order of operations, so every version is
equal to the bit; each moment to score (the event, the re-scorings due before it, an expiry
once idle ``max_idle_ms``, an erasure) is noted as a (version, time) pair, scored all at once
afterwards (``operators.scores``). Nothing here depends on a score.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from operators.columns import VERSION_FIELDS, Matrix, record_versions
from operators.compiled import compiled
from operators.events import EVENT_TYPES, Event
from operators.features import (
    DAY_MS,
    RECENT_IDS,
    WINDOW_COUNT,
    WINDOW_DAYS,
)
from operators.record import Records, recent_ids
from operators.scoring import PipelineConfig
from operators.steps.event_columns import ERASE_TYPE, event_columns
from operators.timeline import (
    CATEGORY,
    COUNTS,
    DUE,
    ERASE,
    EVENT,
    EXISTS,
    EXPIRE,
    FIRST,
    INT_FIELDS,
    LAST,
    LAST_PURCHASE,
    MOMENT_FIELDS,
    REASSIGN,
    RECENT,
    RESCORE,
    SPEND,
    UPDATED,
    USER,
    VERSION,
    Moments,
    Rows,
    Timeline,
)

__all__ = ["Rows", "advance"]

Ints = npt.NDArray[np.int64]


_W: Final = len(WINDOW_DAYS)
_TYPES: Final = len(EVENT_TYPES)
_PURCHASE: Final = EVENT_TYPES.index("purchase")
_CANCEL: Final = EVENT_TYPES.index("cancel")
# The window sums' measure of each type code: views 0, carts 1, purchases 2 (and spend 3).
_MEASURE: Final = np.array(
    [{"view": 0, "add_to_cart": 1, "purchase": 2}.get(t, -1) for t in EVENT_TYPES],
    dtype=np.int64,
)
_WINDOW_MS: Final = np.array([w * DAY_MS for w in WINDOW_DAYS], dtype=np.int64)
_I64: Final = 2**63 - 1
# What became of each event.
APPLIED, LATE, DUPLICATE, FAILED, ERASED = range(5)
# The moment columns.
_M_ROW, _M_AT, _M_VERSION, _M_KIND, _M_EVENT, _M_TRAIN, _M_BEFORE, _M_PURCHASE = range(8)
_MOMENT_FIELDS: Final = len(MOMENT_FIELDS)


def advance(
    users: list[str],
    records: Records,
    events: Sequence[Event],
    config: PipelineConfig,
    watermark_ms: int,
    due_users: Iterable[str],
    reassign: Iterable[str],
    has_centers: bool,
) -> tuple[Rows, Timeline]:
    """Apply ``events`` in order to the records of ``users`` (the stored ones, in order), then
    note the re-scorings due by the new watermark and the reassignments."""
    stored = len(users)
    index = {user: row for row, user in enumerate(users)}
    names = list(users)
    columns, failed = event_columns(events, index, names)
    capacity = stored + len(events)
    ints = np.zeros((capacity, INT_FIELDS), dtype=np.int64)
    windows = np.zeros((capacity, WINDOW_COUNT), dtype=np.float64)
    _load(ints, windows, records)
    versions = np.zeros((capacity, VERSION_FIELDS), dtype=np.float64)
    versions[:stored] = record_versions(records)
    current = np.full(len(names), -1, dtype=np.int64)
    current[:stored] = np.arange(stored)
    status = np.zeros(len(events), dtype=np.int64)
    status[list(failed)] = FAILED
    late_at = np.zeros(len(events), dtype=np.int64)
    processed = np.zeros(_TYPES, dtype=np.int64)
    touched = np.zeros(len(events), dtype=np.int64)
    moments = np.zeros((len(events) * 2 + 64, _MOMENT_FIELDS), dtype=np.int64)
    interval, idle = config.rescore_interval_ms, config.max_idle_ms
    moments, count, rows, made, touches, watermark, duplicates = _advance_events(
        ints, windows, current, stored, versions, stored, moments, 0, *columns,
        status, late_at, processed, touched, 0,
        watermark_ms, config.late_grace_ms, interval, idle, _WINDOW_MS, _MEASURE,
    )  # fmt: skip
    # Users whose re-scoring fell due by the new watermark: those the store indexed, and those
    # this batch touched (their due times were set or moved here), each once, in that order.
    touched_users = [names[u] for u in ints[touched[:touches], USER].tolist()]
    due = list(dict.fromkeys([*due_users, *touched_users]))
    due_ids = np.asarray([index.get(user, -1) for user in due], dtype=np.int64)
    moments, count = _catch_up_users(
        ints, current, due_ids, moments, count, watermark, interval, idle
    )
    rows_of = np.append(current, -1)[due_ids]  # -1: not in the batch, expired or erased
    live = rows_of >= 0
    live[live] = ints[rows_of[live], EXISTS] == 1
    next_due = np.zeros(len(due), dtype=np.int64)
    next_due[live] = ints[rows_of[live], DUE]
    dues = dict(zip(due, next_due.tolist(), strict=True))
    moments = moments[:count]
    extra: list[list[int]] = []
    for user in reassign if has_centers else ():
        uid = index.get(user, -1)
        row = int(current[uid]) if uid >= 0 else -1
        if row >= 0 and ints[row, EXISTS]:
            at, version = max(watermark, int(ints[row, LAST])), int(ints[row, VERSION])
            extra.append([row, at, version, REASSIGN, -1, 0, version, 0])
    if extra:
        moments = np.vstack([moments, np.asarray(extra, dtype=np.int64)])
    ints, windows = ints[:rows], windows[:rows]
    row_users = [names[u] for u in ints[:, USER].tolist()]
    live_users = np.flatnonzero(current >= 0)
    table = Rows(
        users=row_users,
        index=dict(
            zip([names[u] for u in live_users.tolist()], current[live_users].tolist(), strict=True)
        ),
        stored=stored,
        records=records,
        ints=ints,
        windows=windows,
        versions=versions[:made],
    )
    timeline = Timeline(
        moments=_moments(moments),
        late=[(events[i], at) for i, at in zip(*_where(status == LATE, late_at), strict=True)],
        failed=[
            (events[i], failed.get(i, "OverflowError"))
            for i in np.flatnonzero(status == FAILED).tolist()
        ],
        processed_by_type=Counter(
            {t: n for t, n in zip(EVENT_TYPES, processed.tolist(), strict=True) if n}
        ),
        duplicates=duplicates,
        watermark_ms=watermark,
        dues=dues,
    )
    return table, timeline


def _where(mask: npt.NDArray[np.bool_], values: Ints) -> tuple[list[int], list[int]]:
    found = np.flatnonzero(mask)
    return found.tolist(), values[found].tolist()


def _load(ints: Ints, windows: Matrix, records: Records) -> None:
    n = len(records)
    ints[:n, FIRST] = records["first_seen"]
    ints[:n, LAST] = records["last_seen"]
    ints[:n, LAST_PURCHASE] = records["last_purchase"]
    ints[:n, DUE] = records["next_due"]
    ints[:n, SPEND] = records["spend_cents"]
    ints[:n, CATEGORY] = records["category_bits"]
    ints[:n, VERSION] = np.arange(n)
    ints[:n, EXISTS] = 1
    ints[:n, USER] = np.arange(n)
    ints[:n, COUNTS:RECENT] = records["counts"]
    ints[:n, RECENT:] = recent_ids(records).astype(np.int64)
    windows[:n] = records["windows"]


def _moments(m: Ints) -> Moments:
    return Moments(
        row=m[:, _M_ROW].tolist(),
        at_ms=m[:, _M_AT].tolist(),
        version=m[:, _M_VERSION].tolist(),
        kind=m[:, _M_KIND].tolist(),
        event=m[:, _M_EVENT].tolist(),
        train=(m[:, _M_TRAIN] == 1).tolist(),
        before=m[:, _M_BEFORE].tolist(),
        purchase_ms=m[:, _M_PURCHASE].tolist(),
        matrix=m,
    )


@compiled
def _note(
    moments: Ints,
    count: int,
    row: int,
    at: int,
    version: int,
    kind: int,
    event: int,
    train: int,
    before: int,
    purchase: int,
) -> tuple[Ints, int]:
    if count == len(moments):  # grow: a user quiet for long catches up many re-scorings
        grown = np.zeros((2 * len(moments) + 64, _MOMENT_FIELDS), dtype=np.int64)
        grown[:count] = moments[:count]
        moments = grown
    m = moments[count]
    m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7] = (
        row, at, version, kind, event, train, before, purchase,
    )  # fmt: skip
    return moments, count + 1


@compiled
def _catch_up(
    ints: Ints,
    row: int,
    until: int,
    interval: int,
    idle: int,
    moments: Ints,
    count: int,
    version: int,
    last_seen: int,
) -> tuple[Ints, int, bool]:
    """The row's re-scorings due at or before ``until``, each at its due time, of ``version``
    (nothing happened to the user meanwhile), then its expiry if idle ``idle`` by then."""
    due, expires = ints[row, DUE], last_seen + idle
    while due != 0 and due <= until and due < expires:
        moments, count = _note(moments, count, row, due, version, RESCORE, -1, 1, version, 0)
        due = min(due + interval, expires)
    expired = expires <= until
    if expired:
        moments, count = _note(moments, count, row, expires, version, EXPIRE, -1, 0, version, 0)
        due = 0
    ints[row, DUE] = due
    return moments, count, expired


@compiled
def _new_row(ints: Ints, current: Ints, uid: int, rows: int) -> int:
    ints[rows, VERSION] = -1
    ints[rows, USER] = uid
    current[uid] = rows
    return rows


@compiled
def _apply(
    ints: Ints,
    windows: Matrix,
    versions: Matrix,
    row: int,
    made: int,
    code: int,
    ts: int,
    cents: int,
    bit: int,
    digest: int,
    window_ms: Ints,
    measure_of: Ints,
) -> bool:
    """``update_record``'s arithmetic on the row; False (the row untouched) where packing the
    window sums as float32 would overflow, as ``struct`` would refuse to."""
    r = ints[row]
    first, last = r[FIRST], r[LAST]
    if last == 0:
        first = last = ts
    anchor = last if last > ts else ts
    sums = windows[row].copy()
    if anchor != last:  # age the stored sums to the new anchor
        for w in range(_W):
            fade = np.exp(-(anchor - last) / window_ms[w])
            for m in range(4):
                sums[m * _W + w] = sums[m * _W + w] * fade
    measure = measure_of[code]
    is_purchase = code == _PURCHASE
    for w in range(_W):
        weight = 1.0 if anchor == ts else np.exp(-(anchor - ts) / window_ms[w])
        if measure >= 0:
            sums[measure * _W + w] += weight
        if is_purchase:
            sums[3 * _W + w] += cents / 100 * weight
    for k in range(WINDOW_COUNT):
        rounded = np.float32(sums[k])
        if np.isfinite(sums[k]) and not np.isfinite(rounded):
            return False
        sums[k] = rounded
    windows[row] = sums
    r[FIRST] = min(first, ts)
    r[LAST] = anchor
    if is_purchase and ts > r[LAST_PURCHASE]:
        r[LAST_PURCHASE] = ts
    r[COUNTS + code] += 1
    r[SPEND] = r[SPEND] + cents if r[SPEND] <= _I64 - cents else _I64
    if bit >= 0:
        r[CATEGORY] |= 1 << bit
    for k in range(RECENT_IDS - 1, 0, -1):
        r[RECENT + k] = r[RECENT + k - 1]
    r[RECENT] = digest
    r[EXISTS] = 1
    r[UPDATED] = 1
    r[VERSION] = made
    v = versions[made]
    v[0], v[1], v[2] = r[FIRST], r[LAST], r[LAST_PURCHASE]
    v[3], v[4] = r[COUNTS + _PURCHASE], r[COUNTS + _CANCEL]
    v[5] = r[COUNTS : COUNTS + _TYPES].sum()
    v[6], v[7] = r[SPEND], r[CATEGORY]
    v[8:] = sums
    return True


@compiled
def _advance_events(
    ints: Ints,
    windows: Matrix,
    current: Ints,
    rows: int,
    versions: Matrix,
    made: int,
    moments: Ints,
    count: int,
    ev_user: Ints,
    ev_type: Ints,
    ev_ts: Ints,
    ev_cents: Ints,
    ev_bit: Ints,
    ev_digest: Ints,
    status: Ints,
    late_at: Ints,
    processed: Ints,
    touched: Ints,
    touches: int,
    watermark: int,
    grace: int,
    interval: int,
    idle: int,
    window_ms: Ints,
    measure_of: Ints,
) -> tuple[Ints, int, int, int, int, int, int]:
    duplicates = 0
    marked = np.zeros(len(ints), dtype=np.bool_)  # rows already in ``touched``
    for i in range(len(ev_user)):
        if status[i] == FAILED:  # its columns could not be made
            continue
        uid, code = ev_user[i], ev_type[i]
        if code == ERASE_TYPE:  # never late, moves no watermark: in order with events
            row = current[uid]
            if row < 0:
                row = _new_row(ints, current, uid, rows)
                rows += 1
            version = ints[row, VERSION]  # -1: no record (erasing is idempotent)
            moments, count = _note(moments, count, row, watermark, version, ERASE, i, 0, version, 0)
            current[uid] = -1
            ints[row, EXISTS] = 0
            status[i] = ERASED
            if not marked[row]:
                marked[row] = True
                touched[touches] = row
                touches += 1
            continue
        ts = ev_ts[i]
        if ts < watermark:
            status[i], late_at[i] = LATE, watermark
            continue
        watermark_before = watermark
        watermark = max(watermark, ts - grace)
        row = current[uid]
        if row < 0:
            row = _new_row(ints, current, uid, rows)
            rows += 1
        digest = ev_digest[i]
        exists = ints[row, EXISTS] == 1
        if exists:
            seen = False
            for k in range(RECENT_IDS):
                seen |= ints[row, RECENT + k] == digest
            if seen:  # a redelivery or a producer retry
                duplicates += 1
                status[i] = DUPLICATE
                continue
        before, last_before = ints[row, VERSION], ints[row, LAST]
        if exists and ts >= last_before + idle:  # expired before this event: it starts anew
            moments, count, _ = _catch_up(
                ints, row, ts, interval, idle, moments, count, before, last_before
            )
            current[uid] = -1
            ints[row, EXISTS] = 0
            row = _new_row(ints, current, uid, rows)
            rows += 1
            exists, before = False, -1
        if not _apply(
            ints, windows, versions, row, made, code, ts, ev_cents[i], ev_bit[i], digest,
            window_ms, measure_of,
        ):  # fmt: skip
            watermark = watermark_before
            status[i] = FAILED
            continue
        made += 1
        if exists:  # re-scorings that fell due before this event, each at its due time
            moments, count, _ = _catch_up(
                ints, row, ts, interval, idle, moments, count, before, last_before
            )
        # The training sample is of users, not events (heavy users would dominate); a sampled
        # user offers a vector at most once a day.
        train = 1 if not exists or last_before // DAY_MS < ts // DAY_MS else 0
        purchase = ts if code == _PURCHASE else 0
        moments, count = _note(
            moments, count, row, ts, ints[row, VERSION], EVENT, i, train,
            before if exists else -1, purchase,
        )  # fmt: skip
        ints[row, DUE] = ints[row, LAST] + interval
        processed[code] += 1
        if not marked[row]:
            marked[row] = True
            touched[touches] = row
            touches += 1
    return moments, count, rows, made, touches, watermark, duplicates


@compiled
def _catch_up_users(
    ints: Ints,
    current: Ints,
    users: Ints,
    moments: Ints,
    count: int,
    until: int,
    interval: int,
    idle: int,
) -> tuple[Ints, int]:
    """The live users' re-scorings due by ``until`` (then their expiry), user after user."""
    for uid in users:
        row = current[uid] if uid >= 0 else -1
        if row < 0 or ints[row, EXISTS] == 0:
            continue
        moments, count, expired = _catch_up(
            ints, row, until, interval, idle, moments, count, ints[row, VERSION], ints[row, LAST]
        )
        if expired:
            current[uid] = -1
            ints[row, EXISTS] = 0
    return moments, count
