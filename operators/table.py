"""The batch's users as a table: stored records' fields as Python values, updated in place by
events (``operators.timeline``), with a version row per record state to score from."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, TypeVar

import numpy as np

from operators.columns import VERSION_FIELDS, Matrix, record_versions
from operators.events import EVENT_TYPES, Event
from operators.features import RECENT_IDS, WINDOW_COUNT, update_record
from operators.records import Records, recent_ids

T = TypeVar("T")
_PURCHASE: Final = EVENT_TYPES.index("purchase")
_CANCEL: Final = EVENT_TYPES.index("cancel")
_EMPTY_WINDOWS: Final = (0.0,) * WINDOW_COUNT


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

    def retire(self, row: int) -> None:
        """The row's user was removed: its next event starts a new user, on a new row."""
        del self.index[self.users[row]]
        self.exists[row] = False

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
