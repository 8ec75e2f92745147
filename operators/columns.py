"""Features of many scoring moments at once: the feature formulas of ``operators.features``
over arrays.

A batch keeps every version of a user's record it scores (the stored one, and one after each
event) as a row of a float matrix, ``VERSION_FIELDS`` wide; a scoring moment is a version and a
time. ``feature_matrix`` evaluates any features for every moment in one pass of numpy, so the
cost per moment is a few array operations, not a Python call per feature.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from operators.features import (
    CATEGORY_BITS,
    DAY_MS,
    FEATURES,
    WINDOW_COUNT,
    WINDOW_DAYS,
    WINDOW_FEATURES,
)
from operators.record import Records

Matrix = npt.NDArray[np.float64]

# A version row: these fields (CATEGORY: the category bits), then the window sums (as of
# ``last_seen``).
FIRST, LAST, LAST_PURCHASE, PURCHASES, CANCELS, EVENTS, SPEND_CENTS, CATEGORY = range(8)
WINDOWS_AT: Final = 8
VERSION_FIELDS: Final = WINDOWS_AT + WINDOW_COUNT
_PURCHASE: Final = 4  # index of "purchase" in EVENT_TYPES
_CANCEL: Final = 5
_WINDOW_MS: Final = np.array([w * DAY_MS for w in WINDOW_DAYS], dtype=np.float64)


def record_versions(records: Records) -> Matrix:
    """The version row of each stored record."""
    rows = np.empty((len(records), VERSION_FIELDS), dtype=np.float64)
    counts = records["counts"]
    rows[:, FIRST] = records["first_seen"]
    rows[:, LAST] = records["last_seen"]
    rows[:, LAST_PURCHASE] = records["last_purchase"]
    rows[:, PURCHASES] = counts[:, _PURCHASE]
    rows[:, CANCELS] = counts[:, _CANCEL]
    rows[:, EVENTS] = counts.sum(axis=1, dtype=np.int64)
    rows[:, SPEND_CENTS] = records["spend_cents"]
    rows[:, CATEGORY] = records["category_bits"]
    rows[:, WINDOWS_AT:] = records["windows"]
    return rows


def distinct_categories(bits: npt.NDArray[np.uint32]) -> Matrix:
    """Linear counting over arrays (``operators.features.distinct_categories``)."""
    zeros = np.maximum(CATEGORY_BITS - np.bitwise_count(bits).astype(np.float64), 1.0)
    return CATEGORY_BITS * np.log(CATEGORY_BITS / zeros)


def feature_matrix(versions: Matrix, at_ms: Matrix, names: Sequence[str]) -> Matrix:
    """``features[i, j]``: feature ``names[j]`` of version row ``i`` evaluated at ``at_ms[i]``."""
    out = np.empty((len(versions), len(names)), dtype=np.float64)
    for j, name in enumerate(names):
        out[:, j] = _column(versions, at_ms, name)
    return out


def _days_since(at_ms: Matrix, then: Matrix) -> Matrix:
    return np.maximum(at_ms - then, 0.0) / DAY_MS


def _column(v: Matrix, at_ms: Matrix, name: str) -> Matrix:
    if name in _WINDOW_INDEX:
        index = _WINDOW_INDEX[name]
        elapsed = at_ms - v[:, LAST]
        fade = np.exp(-np.maximum(elapsed, 0.0) / _WINDOW_MS[index % len(WINDOW_DAYS)])
        return np.asarray(v[:, WINDOWS_AT + index] * fade)
    if name == "recency_days":
        bought = v[:, LAST_PURCHASE] > 0
        return np.where(
            bought, _days_since(at_ms, v[:, LAST_PURCHASE]), _days_since(at_ms, v[:, FIRST])
        )
    if name == "frequency":
        return np.asarray(v[:, PURCHASES])
    if name == "monetary":
        return np.asarray(v[:, SPEND_CENTS] / 100)
    if name == "avg_order_value":
        frequency = v[:, PURCHASES]
        return np.where(frequency > 0, v[:, SPEND_CENTS] / 100 / np.maximum(frequency, 1), 0.0)
    if name == "tenure_days":
        return _days_since(at_ms, v[:, FIRST])
    if name == "inactive_days":
        return _days_since(at_ms, v[:, LAST])
    if name == "cancellations":
        return np.asarray(v[:, CANCELS])
    if name == "events":
        return np.asarray(v[:, EVENTS])
    if name == "categories":
        return distinct_categories(v[:, CATEGORY].astype(np.uint32))
    raise KeyError(name)


_WINDOW_INDEX: Final = {name: i for i, name in enumerate(WINDOW_FEATURES)}
assert set(FEATURES) == {*_WINDOW_INDEX, *(f for f in FEATURES if f not in _WINDOW_INDEX)}


def version_features(
    version: Sequence[float], at_ms: int, names: Sequence[str]
) -> dict[str, float]:
    """One version's features at one time, in plain Python: for the rare single moment (a
    label opening), where an array's overhead would cost more than the arithmetic."""
    v, t = version, float(at_ms)
    return {name: _scalar(v, t, name) for name in names}


def _scalar(v: Sequence[float], t: float, name: str) -> float:
    index = _WINDOW_INDEX.get(name)
    if index is not None:
        elapsed = t - v[LAST]
        stored = float(v[WINDOWS_AT + index])
        window_ms = WINDOW_DAYS[index % len(WINDOW_DAYS)] * DAY_MS
        return stored * math.exp(-elapsed / window_ms) if elapsed > 0 else stored
    if name == "recency_days":
        then = v[LAST_PURCHASE] if v[LAST_PURCHASE] > 0 else v[FIRST]
        return float(max(t - then, 0.0) / DAY_MS)
    if name == "tenure_days":
        return float(max(t - v[FIRST], 0.0) / DAY_MS)
    if name == "inactive_days":
        return float(max(t - v[LAST], 0.0) / DAY_MS)
    if name == "avg_order_value":
        return float(v[SPEND_CENTS] / 100 / v[PURCHASES]) if v[PURCHASES] > 0 else 0.0
    simple = {"frequency": PURCHASES, "cancellations": CANCELS, "events": EVENTS}
    if name in simple:
        return float(v[simple[name]])
    if name == "monetary":
        return float(v[SPEND_CENTS] / 100)
    zeros = max(CATEGORY_BITS - int(v[CATEGORY]).bit_count(), 1)
    return CATEGORY_BITS * math.log(CATEGORY_BITS / zeros)  # categories


def log1p_clipped(values: Matrix) -> Matrix:
    """``log1p(max(x, 0))``: how segments and tags read every feature."""
    return np.log1p(np.maximum(values, 0.0))
