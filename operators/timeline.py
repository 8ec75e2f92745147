"""Steps 2 and 3 of a batch: dedupe and late events, then features, in event order.

The only sequential step. Each event that is neither late nor a redelivery updates its user's
record (plain ints and floats, no object per event) and leaves a new *version* of it; every
moment the user must be scored at (the event, and the re-scorings due before it) is noted as
a (version, time) pair, to be scored all at once afterwards (``operators.scores``). Nothing
here depends on a score: when a user is next due, what trains, and which label opens follow
from event times only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, TypeVar

import numpy as np

from operators.columns import VERSION_FIELDS, Matrix, record_versions
from operators.events import EVENT_TYPES, Event
from operators.features import (
    DAY_MS,
    RECENT_IDS,
    WINDOW_COUNT,
    event_digest,
)
from operators.record_update import update_record
from operators.records import Records, recent_ids
from operators.scoring import PipelineConfig

T = TypeVar("T")
EVENT, RESCORE, REASSIGN = 0, 1, 2  # kinds of scoring moment
_PURCHASE: Final = EVENT_TYPES.index("purchase")
_CANCEL: Final = EVENT_TYPES.index("cancel")
_EMPTY_WINDOWS: Final = (0.0,) * WINDOW_COUNT


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

    def extend(self, rows: list[int], at_ms: list[int], versions: list[int]) -> None:
        """Re-scorings, each of the version the user holds."""
        count = len(rows)
        self.row += rows
        self.at_ms += at_ms
        self.version += versions
        self.kind += [RESCORE] * count
        self.event += [-1] * count
        self.train += [True] * count
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


class Table:
    """The batch's users: the stored records' fields as Python values, updated in place.

    Every row has its times (re-scorings read them); the fields only events change are turned
    into Python values for the rows with events only, since most rows of a batch are users
    merely due for a re-scoring, which reads the record's version row instead.
    """

    def __init__(self, users: list[str], records: Records, active: Iterable[str] = ()) -> None:
        self.users = users
        self.index = {user: row for row, user in enumerate(users)}
        self.stored = len(users)  # rows below this have a stored record
        self.records = records
        self.first = records["first_seen"].tolist()
        self.last = records["last_seen"].tolist()
        self.next_due = records["next_due"].tolist()
        self.version = list(range(len(users)))  # version row of each user's current record
        self.exists = [True] * len(users)
        self.updated: set[int] = set()  # rows whose features events changed
        rows = sorted({self.index[u] for u in active if u in self.index})
        picked = records[rows]

        def by_row(values: Iterable[T]) -> dict[int, T]:
            return dict(zip(rows, values, strict=True))

        self.last_purchase = by_row(picked["last_purchase"].tolist())
        self.counts: dict[int, list[int]] = by_row(picked["counts"].tolist())
        self.spend = by_row(picked["spend_cents"].tolist())
        self.windows: dict[int, tuple[float, ...]] = by_row(map(tuple, picked["windows"].tolist()))
        self.recent: dict[int, tuple[int, ...]] = by_row(map(tuple, recent_ids(picked).tolist()))
        self.category = by_row(picked["category_bits"].tolist())
        self._initial = record_versions(records)
        self._new: list[tuple[float, ...]] = []

    def row_of(self, user: str) -> int:
        """The user's row (a new one for a new user); its event fields must be loaded, so only
        for users among ``active``."""
        row = self.index.get(user)
        if row is None:
            row = self.index[user] = len(self.users)
            self.users.append(user)
            self.first.append(0)
            self.last.append(0)
            self.next_due.append(0)
            self.version.append(-1)
            self.exists.append(False)
            self.last_purchase[row] = 0
            self.counts[row] = [0] * len(EVENT_TYPES)
            self.spend[row] = 0
            self.windows[row] = _EMPTY_WINDOWS
            self.recent[row] = (0,) * RECENT_IDS
            self.category[row] = 0
        return row

    def versions(self) -> Matrix:
        """Every version row: the stored records', then those the events made."""
        if not self._new:
            return self._initial
        made = np.asarray(self._new, dtype=np.float64).reshape(-1, VERSION_FIELDS)
        return np.vstack([self._initial, made])

    def apply(self, row: int, event: Event, digest: int) -> None:
        """Update the row's record with ``event`` (``update_record``) and note a new version."""
        first, last, last_purchase, counts, spend, windows, category = update_record(
            self.first[row],
            self.last[row],
            self.last_purchase[row],
            self.counts[row],
            self.spend[row],
            self.windows[row],
            self.category[row],
            event,
        )
        self.first[row], self.last[row], self.last_purchase[row] = first, last, last_purchase
        self.counts[row], self.spend[row], self.windows[row] = counts, spend, windows
        self.category[row] = category
        self.recent[row] = (digest, *self.recent[row][:-1])
        self.exists[row] = True
        self.updated.add(row)
        self.version[row] = self.stored + len(self._new)
        self._new.append(
            (
                first,
                last,
                last_purchase,
                counts[_PURCHASE],
                counts[_CANCEL],
                sum(counts),
                spend,
                category,
                *windows,
            )
        )


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
    for number, event in enumerate(events):
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
    _catch_up_many(
        table, [r for r in rows if r >= 0 and table.exists[r]], out.watermark_ms, config, moments
    )
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
) -> None:
    """``_catch_up`` for many rows at once (the users due by the watermark), as arrays: the
    same moments in the same order."""
    if not rows:
        return
    interval, idle = config.rescore_interval_ms, config.max_idle_ms
    due = np.asarray([table.next_due[r] for r in rows], dtype=np.int64)
    last = np.asarray([table.last[r] for r in rows], dtype=np.int64)
    active = (due != 0) & (due <= until_ms)
    in_time = np.where(active, (until_ms - due) // interval + 1, 0)  # moments up to until_ms
    # After the moment at due + j * interval the next would be idle too long: stop there.
    stop = np.maximum((last + idle - due) // interval, 0)
    counts = np.minimum(in_time, stop + 1)
    follow = np.where(in_time >= stop + 1, 0, due + in_time * interval)
    for r, value in zip(rows, np.where(active, follow, due).tolist(), strict=True):
        table.next_due[r] = value
    total = int(counts.sum())
    if not total:
        return
    starts = np.cumsum(counts) - counts
    steps = np.arange(total) - np.repeat(starts, counts)
    row_of = np.repeat(np.asarray(rows, dtype=np.int64), counts).tolist()
    versions = [table.version[r] for r in row_of]
    at = (np.repeat(due, counts) + steps * interval).tolist()
    moments.extend(row_of, at, versions)


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
    ``version`` (the record as it was: nothing happened to the user meanwhile)."""
    due = table.next_due[row]
    while due and due <= until_ms:
        follow = due + config.rescore_interval_ms
        if follow - last_seen > config.max_idle_ms:
            follow = 0  # idle for good: stop re-scoring (the record expires by TTL)
        moments.add(row, due, version, RESCORE, -1, True, version)
        due = follow
    table.next_due[row] = due
