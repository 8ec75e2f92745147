"""What steps 2 and 3 of a batch find (``operators.steps.advance``): the users' rows after its
events, the moments to score, each a (record version, time) pair, and the events set aside
(late, failed)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from operators.columns import Matrix
from operators.events import EVENT_TYPES, Event
from operators.features import RECENT_IDS
from operators.record import Records

Ints = npt.NDArray[np.int64]

# Kinds of moment; from EXPIRE on, the moment removes the user (idle too long, or erased).
EVENT, RESCORE, REASSIGN, EXPIRE, ERASE = 0, 1, 2, 3, 4

__all__ = ["ERASE", "EVENT", "EXPIRE", "REASSIGN", "RESCORE", "Moments", "Rows", "Timeline"]


# The integer columns of a row; then the event counts by type and the recent event digests.
FIRST, LAST, LAST_PURCHASE, DUE, SPEND, CATEGORY, VERSION, EXISTS, UPDATED, USER = range(10)
COUNTS: Final = 10
RECENT: Final = COUNTS + len(EVENT_TYPES)
INT_FIELDS: Final = RECENT + RECENT_IDS

MOMENT_FIELDS: Final = (
    "row",
    "at_ms",
    "version",
    "kind",
    "event",
    "train",
    "before",
    "purchase_ms",
)


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
    # The same columns as one array, (moments, 8), in the order above: for array work.
    matrix: npt.NDArray[np.int64] = field(
        default_factory=lambda: np.zeros((0, len(MOMENT_FIELDS)), dtype=np.int64)
    )

    def array(self, name: str) -> npt.NDArray[np.int64]:
        """One column as an array (``train``: 0 or 1)."""
        return self.matrix[:, MOMENT_FIELDS.index(name)]


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


@dataclass(slots=True)
class Rows:
    """The batch's users after its events: a row per record state (a user who expired or was
    erased and came back has a row for each life), as columns."""

    users: list[str]  # the user of each row
    index: dict[str, int]  # each user's current row; expired and erased users are absent
    stored: int  # rows below this hold the stored records, in ``records``
    records: Records
    ints: Ints  # (rows, INT_FIELDS)
    windows: Matrix  # (rows, WINDOW_COUNT): the window sums as of LAST, float32 values
    versions: Matrix  # every version row: the stored records', then one per applied event

    @property
    def next_due(self) -> Ints:
        return self.ints[:, DUE]

    @property
    def updated(self) -> npt.NDArray[np.bool_]:
        updated: npt.NDArray[np.bool_] = self.ints[:, UPDATED] == 1
        return updated
