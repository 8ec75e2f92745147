"""Steps 2 and 3 of a batch: dedupe and late events, then features, in event order.

The only sequential step. Each event that is neither late nor a redelivery updates its user's
record (plain ints and floats, no object per event) and leaves a new *version* of it; every
moment the user must be scored at (the event, the re-scorings due before it, its expiry once
idle for ``max_idle_ms``) is noted as a (version, time) pair, to be scored all at once
afterwards (``operators.scores``). Nothing here depends on a score: when a user is next due,
what trains, which label opens and when the user expires follow from event times only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from operators.erasure import ERASE as ERASE_REQUEST
from operators.events import Event
from operators.features import DAY_MS, event_digest
from operators.scoring import PipelineConfig
from operators.table import Table

# Kinds of moment; from EXPIRE on, the moment removes the user (idle too long, or erased).
EVENT, RESCORE, REASSIGN, EXPIRE, ERASE = 0, 1, 2, 3, 4

__all__ = [
    "ERASE",
    "EVENT",
    "EXPIRE",
    "REASSIGN",
    "RESCORE",
    "Moments",
    "Table",
    "Timeline",
    "run_timeline",
]


@dataclass(slots=True)
class Moments:
    """Scoring moments in the order they happened, as parallel columns."""

    row: list[int] = field(default_factory=list)  # the user's row in the table
    at_ms: list[int] = field(default_factory=list)
    version: list[int] = field(default_factory=list)  # the record version scored
    kind: list[int] = field(default_factory=list)  # EVENT, RESCORE or REASSIGN
    event: list[int] = field(default_factory=list)  # index of the event in the batch, or -1
    train: list[bool] = field(default_factory=list)  # offers a training vector if sampled
    before: list[int] = field(default_factory=list)  # version before the event; -1: new user
    purchase_ms: list[int] = field(default_factory=list)  # the event's time if a purchase

    def extend(
        self, rows: list[int], at_ms: list[int], versions: list[int], kinds: list[int]
    ) -> None:
        """Re-scorings and expiries, each of the version the user holds."""
        count = len(rows)
        self.row += rows
        self.at_ms += at_ms
        self.version += versions
        self.kind += kinds
        self.event += [-1] * count
        self.train += [kind == RESCORE for kind in kinds]
        self.before += versions
        self.purchase_ms += [0] * count

    def add(
        self, row: int, at_ms: int, version: int, kind: int, event: int, train: bool, before: int
    ) -> None:
        self.row.append(row)
        self.at_ms.append(at_ms)
        self.version.append(version)
        self.kind.append(kind)
        self.event.append(event)
        self.train.append(train)
        self.before.append(before)
        self.purchase_ms.append(0)


@dataclass(slots=True)
class Timeline:
    """What steps 2 and 3 found: moments to score, and the events set aside."""

    moments: Moments = field(default_factory=Moments)
    late: list[tuple[Event, int]] = field(default_factory=list)
    failed: list[tuple[Event, str]] = field(default_factory=list)
    processed_by_type: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    watermark_ms: int = 0
    dues: dict[str, int] = field(default_factory=dict)
    touched: dict[int, None] = field(default_factory=dict)  # rows with events, in order


def run_timeline(
    table: Table,
    events: list[Event],
    config: PipelineConfig,
    watermark_ms: int,
    due_users: Iterable[str],
    reassign: Iterable[str],
    has_centers: bool,
) -> Timeline:
    """Apply the events in order; note every scoring moment (see the module docstring)."""
    out = Timeline(watermark_ms=watermark_ms)
    moments, grace, interval = out.moments, config.late_grace_ms, config.rescore_interval_ms
    idle = config.max_idle_ms
    for number, event in enumerate(events):
        if event.type == ERASE_REQUEST:  # never late, moves no watermark: in order with events
            row = table.row_of(event.user_id)
            version = table.version[row]  # -1: no record (erasing is idempotent)
            moments.add(row, out.watermark_ms, version, ERASE, number, False, version)
            table.retire(row)
            out.touched[row] = None  # its due entry goes (or follows a user back in the batch)
            continue
        ts = event.ts_ms
        if ts < out.watermark_ms:
            out.late.append((event, out.watermark_ms))
            continue
        watermark_before = out.watermark_ms
        out.watermark_ms = max(out.watermark_ms, ts - grace)
        row = table.row_of(event.user_id)
        digest = event_digest(event.event_id)
        exists = table.exists[row]
        if exists and digest in table.recent[row]:
            out.duplicates += 1  # a redelivery or a producer retry
            continue
        before, last_before = table.version[row], table.last[row]
        if exists and ts >= last_before + idle:  # expired before this event: it starts anew
            _catch_up(table, row, ts, config, moments, before, last_before)
            table.retire(row)
            row, exists, before = table.row_of(event.user_id), False, -1
        try:
            table.apply(row, event, digest)
        except Exception as exc:  # one event's bug must not stop the stream: dead-letter it
            out.watermark_ms = watermark_before
            out.failed.append((event, type(exc).__name__))
            continue
        if exists:  # re-scorings that fell due before this event, each at its due time
            _catch_up(table, row, ts, config, moments, before, last_before)
        # The training sample is of users, not events (heavy users would dominate); a sampled
        # user offers a vector at most once a day.
        train = not exists or last_before // DAY_MS < ts // DAY_MS
        moments.add(row, ts, table.version[row], EVENT, number, train, before if exists else -1)
        if event.type == "purchase":
            moments.purchase_ms[-1] = ts
        table.next_due[row] = table.last[row] + interval
        out.processed_by_type[event.type] += 1
        out.touched[row] = None
    # Users whose re-scoring fell due by the new watermark: those the store indexed, and those
    # this batch touched (their due times were set or moved here).
    users = dict.fromkeys([*due_users, *(table.users[r] for r in out.touched)])
    rows = [table.index.get(user, -1) for user in users]
    live = [r for r in rows if r >= 0 and table.exists[r]]
    for row in _catch_up_many(table, live, out.watermark_ms, config, moments):
        table.retire(row)
    rows = [table.index.get(user, -1) for user in users]
    for user, row in zip(users, rows, strict=True):
        # The index follows the record, always; expired or erased users leave it.
        out.dues[user] = table.next_due[row] if row >= 0 and table.exists[row] else 0
    for user in reassign if has_centers else ():
        row = table.index.get(user, -1)
        if row >= 0 and table.exists[row]:
            at = max(out.watermark_ms, table.last[row])
            moments.add(row, at, table.version[row], REASSIGN, -1, False, table.version[row])
    return out


def _catch_up_many(
    table: Table, rows: list[int], until_ms: int, config: PipelineConfig, moments: Moments
) -> list[int]:
    """``_catch_up`` for many rows at once (the users due by the watermark), as arrays: the
    same moments in the same order. Returns the rows that expired."""
    if not rows:
        return []
    interval = config.rescore_interval_ms
    due = np.asarray([table.next_due[r] for r in rows], dtype=np.int64)
    expires = np.asarray([table.last[r] for r in rows], dtype=np.int64) + config.max_idle_ms
    active = (due != 0) & (due <= until_ms)
    in_time = np.where(active, (until_ms - due) // interval + 1, 0)  # moments up to until_ms
    before_expiry = np.maximum(-((due - expires) // interval), 0)  # ceil((expires - due) / i)
    counts = np.minimum(in_time, before_expiry)
    expired = expires <= until_ms
    follow = np.where(active, np.minimum(due + in_time * interval, expires), due)
    for r, value in zip(rows, np.where(expired, 0, follow).tolist(), strict=True):
        table.next_due[r] = value
    total = int(counts.sum() + expired.sum())
    if not total:
        return []
    each = counts + expired  # the re-scorings, then the expiry
    starts = np.cumsum(each) - each
    steps = np.arange(total) - np.repeat(starts, each)
    at = np.repeat(due, each) + steps * interval
    kinds = np.full(total, RESCORE, dtype=np.int64)
    last = (starts + each - 1)[expired]  # each expired row's last moment is its expiry
    at[last], kinds[last] = expires[expired], EXPIRE
    row_of = np.repeat(np.asarray(rows, dtype=np.int64), each).tolist()
    versions = [table.version[r] for r in row_of]
    moments.extend(row_of, at.tolist(), versions, kinds.tolist())
    return [r for r, gone in zip(rows, expired.tolist(), strict=True) if gone]


def _catch_up(
    table: Table,
    row: int,
    until_ms: int,
    config: PipelineConfig,
    moments: Moments,
    version: int,
    last_seen: int,
) -> None:
    """Note the row's re-scorings due at or before ``until_ms``, each at its due time, scoring
    ``version`` (the record as it was: nothing happened to the user meanwhile), then its expiry
    if it was idle ``max_idle_ms`` by then."""
    due, expires = table.next_due[row], last_seen + config.max_idle_ms
    while due and due <= until_ms and due < expires:
        moments.add(row, due, version, RESCORE, -1, True, version)
        due = min(due + config.rescore_interval_ms, expires)
    if expires <= until_ms:
        moments.add(row, expires, version, EXPIRE, -1, False, version)
        due = 0
    table.next_due[row] = due
