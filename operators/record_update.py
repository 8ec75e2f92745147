"""One event's arithmetic on a user record's plain fields (no object per event).

The one copy of it: ``operators.timeline.Table`` runs it on the values it keeps per row, and
``operators.features.update_features`` on a ``UserState``'s.
"""

from __future__ import annotations

import math
import struct
import zlib
from typing import Final

from operators.events import EVENT_TYPES, Event
from operators.features import CATEGORY_BITS, DAY_MS, WINDOW_COUNT, WINDOW_DAYS

_TYPE_INDEX: Final = {name: i for i, name in enumerate(EVENT_TYPES)}
_PURCHASE: Final = _TYPE_INDEX["purchase"]
_CANCEL: Final = _TYPE_INDEX["cancel"]
# The window sums' measure of each event type: views, carts, purchases (and spend).
_MEASURE: Final = {_TYPE_INDEX["view"]: 0, _TYPE_INDEX["add_to_cart"]: 1, _PURCHASE: 2}
_W: Final = len(WINDOW_DAYS)
_WINDOW_MS: Final = tuple(w * DAY_MS for w in WINDOW_DAYS)
_FLOAT32S: Final = struct.Struct(f"<{WINDOW_COUNT}f")
_NO_FADE: Final = (1.0,) * _W


def update_record(
    first: int,
    last: int,
    last_purchase: int,
    counts: list[int],
    spend: int,
    windows: tuple[float, ...],
    category: int,
    event: Event,
) -> tuple[int, int, int, list[int], int, tuple[float, ...], int]:
    """A record's feature fields after ``event``; ``last == 0`` means a new user."""
    ts = event.ts_ms
    if last == 0:
        first = last = ts
    index = _TYPE_INDEX[event.type]
    is_purchase = index == _PURCHASE
    cents = round((event.amount or 0.0) * 100) if is_purchase else 0
    anchor = last if last > ts else ts
    # Age the stored sums to the new anchor, then add this event at its weight there.
    ageing = _fades(anchor - last)
    weights = _fades(anchor - ts)
    if ageing is _NO_FADE:
        sums = list(windows)
    else:
        sums = [value * ageing[i % _W] for i, value in enumerate(windows)]
    measure = _MEASURE.get(index)
    if measure is not None:
        for w in range(_W):
            sums[measure * _W + w] += weights[w]
    if is_purchase:
        for w in range(_W):
            sums[3 * _W + w] += cents / 100 * weights[w]
    counts = counts.copy()
    counts[index] += 1
    if event.category:
        category |= 1 << (zlib.crc32(event.category.encode()) % CATEGORY_BITS)
    return (
        min(first, ts),
        anchor,
        max(last_purchase, ts) if is_purchase else last_purchase,
        counts,
        spend + cents,
        _FLOAT32S.unpack(_FLOAT32S.pack(*sums)),  # rounded to float32 as stored
        category,
    )


def _fades(elapsed_ms: int) -> tuple[float, ...]:
    if elapsed_ms == 0:
        return _NO_FADE
    return tuple(math.exp(-elapsed_ms / w) for w in _WINDOW_MS)
