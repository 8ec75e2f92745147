"""The batch's events as columns, for the compiled step (``operators.steps.advance``): the
user as a number, the type as a code, the time, a purchase's cents, the category's bit and the
id's digest, each an int64 array. An event whose columns cannot be made (a bug) is set aside,
named, and the rest go on."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Final, cast

import numpy as np
import numpy.typing as npt

from operators.erasure import ERASE as ERASE_REQUEST
from operators.events import EVENT_TYPES, Event
from operators.features import CATEGORY_BITS, event_digest

__all__ = ["CODES", "ERASE_TYPE", "PURCHASE", "Columns", "event_columns"]

Ints = npt.NDArray[np.int64]
ERASE_TYPE: Final = len(EVENT_TYPES)  # an erasure request's type code
PURCHASE: Final = EVENT_TYPES.index("purchase")
CODES: Final = {t: i for i, t in enumerate(EVENT_TYPES)} | {ERASE_REQUEST: ERASE_TYPE}
Columns = tuple[Ints, Ints, Ints, Ints, Ints, Ints]


def event_columns(
    events: Sequence[Event], index: dict[str, int], names: list[str]
) -> tuple[Columns, dict[int, str]]:
    """The events as columns: user id (a number; new users numbered in order of appearance),
    type code, time, cents of a purchase, category bit (-1: none), id digest. And the events
    whose columns raised (a bug: dead-lettered, the rest goes on), with the exception's name."""
    for event in events:
        if index.setdefault(event.user_id, len(index)) == len(names):
            names.append(event.user_id)
    try:
        values = [_event_values(e, index) for e in events]
        failed: dict[int, str] = {}
    except Exception:  # find the culprits one by one: a bug must not stop the stream
        values, failed = [], {}
        for i, event in enumerate(events):
            try:
                values.append(_event_values(event, index))
            except Exception as exc:
                values.append((index[event.user_id], 0, 0, 0, -1, 0))
                failed[i] = type(exc).__name__
    table = np.asarray(values, dtype=np.int64).reshape(len(events), 6)
    columns = tuple(np.ascontiguousarray(table[:, k]) for k in range(6))
    return cast(Columns, columns), failed


def _event_values(event: Event, index: dict[str, int]) -> tuple[int, int, int, int, int, int]:
    code = CODES[event.type]
    return (
        index[event.user_id],
        code,
        event.ts_ms,
        round((event.amount or 0.0) * 100) if code == PURCHASE else 0,
        zlib.crc32(event.category.encode()) % CATEGORY_BITS if event.category else -1,
        event_digest(event.event_id),
    )
