"""Per-user rolling features: a fixed-size record updated in event time, read at any time.

The record keeps exact lifetime facts (counts per event type, gross spend in cents, first/last
seen, last purchase) and exponentially weighted windows of 7, 30 and 90 days. Every feature is
evaluated at a time ``t`` given by the caller (an event's time or the watermark), so a user who
went quiet reads correctly without sending another event. Nothing reads the wall clock.

Feature formulas (``t`` = evaluation time, ``D`` = one day; "purchases" are ``purchase`` events):

====================  =========================================================================
``recency_days``      ``(t - last purchase time) / D``; ``tenure_days`` if no purchase yet
``frequency``         number of purchases (exact)
``monetary``          gross sum of purchase amounts (exact to the cent; cancels do not subtract)
``avg_order_value``   ``monetary / frequency``; 0 if no purchase
``tenure_days``       ``(t - first event time) / D``
``inactive_days``     ``(t - last event time) / D``
``cancellations``     number of ``cancel`` events (exact)
``events``            number of events of any type (exact)
``categories``        distinct ``category`` values, estimated by linear counting on 32 bits
                      (exact while small: ≈ +/-1 below 10, saturates near 100)
``purchases_<w>d``    ``sum over purchases of exp(-(t - ts) / (w D))``, for w in 7, 30, 90
``spend_<w>d``        ``sum over purchases of amount * exp(-(t - ts) / (w D))``
``views_<w>d``        the same sum over ``view`` events
``carts_<w>d``        the same sum over ``add_to_cart`` events
====================  =========================================================================

The ``<w>d`` windows are exponentially weighted: an event counts fully when new and fades with
time constant ``w`` days, so a steady rate ``r`` per day reads ``r * w``, as in a sliding window
of ``w`` days, without storing the events. Times before ``t`` only: events later than ``t`` (a
late evaluation) count at weight 1. Window sums are stored as 32-bit floats (relative error
below 1e-6); counts, cents and times are exact integers.
"""

from __future__ import annotations

import hashlib
import math
import struct
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from operators.events import EVENT_TYPES, Event

DAY_MS: Final = 86_400_000
WINDOW_DAYS: Final = (7, 30, 90)
RECENT_IDS: Final = 4  # event ids remembered per user: a redelivery among them counts once
NO_SEGMENT: Final = -1
CATEGORY_BITS: Final = 32
TAG_SLOTS: Final = 8  # tags a record holds: a bit set in one byte, an entry time each

_TYPE_INDEX: Final = {name: i for i, name in enumerate(EVENT_TYPES)}
_PURCHASE: Final = _TYPE_INDEX["purchase"]
_CANCEL: Final = _TYPE_INDEX["cancel"]
_N: Final = len(EVENT_TYPES)
# Windowed measures: index into UserState.windows is measure * len(WINDOW_DAYS) + window.
_MEASURES: Final = ("views", "carts", "purchases", "spend")
_W: Final = len(WINDOW_DAYS)
WINDOW_COUNT: Final = len(_MEASURES) * _W
_WINDOW_MS: Final = tuple(w * DAY_MS for w in WINDOW_DAYS)
# The window sums' measure of each event type: views, carts, purchases (and spend).
_MEASURE: Final = {_TYPE_INDEX["view"]: 0, _TYPE_INDEX["add_to_cart"]: 1, _PURCHASE: 2}
_FLOAT32S: Final = struct.Struct(f"<{WINDOW_COUNT}f")
_NO_FADE: Final = (1.0,) * _W

# Window feature names in the order of UserState.windows.
WINDOW_FEATURES: Final = tuple(f"{measure}_{w}d" for measure in _MEASURES for w in WINDOW_DAYS)
FEATURES: Final = (
    "recency_days",
    "frequency",
    "monetary",
    "avg_order_value",
    "tenure_days",
    "inactive_days",
    "cancellations",
    "events",
    "categories",
    *WINDOW_FEATURES,
)


@dataclass(frozen=True, slots=True)
class UserState:
    """One user's record. Times are epoch ms in event time; ``segment`` is -1 until assigned.

    ``windows`` holds the window sums as of ``last_seen_ms``; read them with :func:`features_at`.
    ``pending_segment``/``pending_streak`` count consecutive assignments to another segment
    (anti-flapping), ``tags`` is a bit set of the tags the user has, ``next_due_ms`` is when
    the user is next re-scored if no event comes first (0: never). ``tags_entered_s`` holds,
    per tag bit, when the user entered the tag they hold (epoch seconds, event time; 0 for a
    tag not held, or held since before records kept the time).
    """

    first_seen_ms: int
    last_seen_ms: int
    last_purchase_ms: int  # 0: no purchase yet
    counts: tuple[int, ...]
    spend_cents: int
    windows: tuple[float, ...]
    recent_event_ids: tuple[int, ...]
    category_bits: int = 0
    next_due_ms: int = 0
    segment: int = NO_SEGMENT
    pending_segment: int = NO_SEGMENT
    pending_streak: int = 0
    tags: int = 0
    seq: int = 0
    tags_entered_s: tuple[int, ...] = (0,) * TAG_SLOTS

    @property
    def events_total(self) -> int:
        return sum(self.counts)

    def count(self, event_type: str) -> int:
        return self.counts[_TYPE_INDEX[event_type]]


def event_digest(event_id: str) -> int:
    """A stable 48-bit digest (never Python's salted ``hash``): same id, same digest, anywhere.

    48 bits keep four of them in the record's 256-byte Redis budget; a new event is taken for
    a redelivery with probability 4 / 2**48 (one in 70 trillion events).
    """
    digest = hashlib.blake2b(event_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest[:6], "little")


@lru_cache(maxsize=1 << 16)  # a batch re-reads its users' digests; ~10 MB when full
def user_digest(user_id: str) -> int:
    """A stable 64-bit digest of a user id, for sampling users the same way in every process."""
    return int.from_bytes(
        hashlib.blake2b(user_id.encode(), digest_size=8, person=b"user").digest(), "little"
    )


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
    """A record's feature fields after ``event``; ``last == 0`` means a new user.

    One event's arithmetic on a record's plain fields: the scalar path (``update_features``).
    The batch's compiled step (``operators.steps.advance``) does the same arithmetic in the same
    order over columns; a property test holds the two equal to the bit."""
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


def update_features(state: UserState | None, event: Event, digest: int | None = None) -> UserState:
    """The user's record after ``event``. Pure; the caller drops duplicates first.

    ``digest`` is ``event_digest(event.event_id)`` if the caller has it already. Events may
    arrive out of order: the window sums stay anchored at the latest event time, and an older
    event is added with the weight its age gives it, so the result does not depend on order.
    """
    if state is None:
        state = UserState(
            first_seen_ms=event.ts_ms,
            last_seen_ms=event.ts_ms,
            last_purchase_ms=0,
            counts=(0,) * _N,
            spend_cents=0,
            windows=(0.0,) * (len(_MEASURES) * _W),
            recent_event_ids=(0,) * RECENT_IDS,
        )
    first, last, last_purchase, counts, spend, windows, category_bits = update_record(
        state.first_seen_ms,
        state.last_seen_ms,
        state.last_purchase_ms,
        list(state.counts),
        state.spend_cents,
        state.windows,
        state.category_bits,
        event,
    )
    if digest is None:
        digest = event_digest(event.event_id)
    # Built directly rather than with dataclasses.replace: this runs once per event.
    return UserState(
        first_seen_ms=first,
        last_seen_ms=last,
        last_purchase_ms=last_purchase,
        counts=tuple(counts),
        spend_cents=spend,
        windows=windows,
        recent_event_ids=(digest, *state.recent_event_ids[:-1]),
        category_bits=category_bits,
        next_due_ms=state.next_due_ms,
        segment=state.segment,
        pending_segment=state.pending_segment,
        pending_streak=state.pending_streak,
        tags=state.tags,
        seq=state.seq,
    )


def features_at(
    state: UserState,
    at_ms: int,
    names: Sequence[str] = FEATURES,
) -> dict[str, float]:
    """The features ``names`` (default: all), evaluated at ``at_ms`` (see the module docstring)."""
    return {name: _FEATURE[name](state, at_ms) for name in names}


def _tenure(state: UserState, at_ms: int) -> float:
    return max(at_ms - state.first_seen_ms, 0) / DAY_MS


def _recency(state: UserState, at_ms: int) -> float:
    if state.last_purchase_ms:
        return max(at_ms - state.last_purchase_ms, 0) / DAY_MS
    return _tenure(state, at_ms)


def _avg_order_value(state: UserState, at_ms: int) -> float:
    frequency = state.counts[_PURCHASE]
    return state.spend_cents / 100 / frequency if frequency else 0.0


def _window(index: int) -> Callable[[UserState, int], float]:
    window_ms = _WINDOW_MS[index % _W]

    def value(state: UserState, at_ms: int) -> float:
        elapsed = at_ms - state.last_seen_ms
        stored = state.windows[index]
        return stored * math.exp(-elapsed / window_ms) if elapsed > 0 else stored

    return value


# One small function per feature, so scoring computes only the features a model uses.
_FEATURE: Final[dict[str, Callable[[UserState, int], float]]] = {
    "recency_days": _recency,
    "frequency": lambda state, _: float(state.counts[_PURCHASE]),
    "monetary": lambda state, _: state.spend_cents / 100,
    "avg_order_value": _avg_order_value,
    "tenure_days": _tenure,
    "inactive_days": lambda state, at_ms: max(at_ms - state.last_seen_ms, 0) / DAY_MS,
    "cancellations": lambda state, _: float(state.counts[_CANCEL]),
    "events": lambda state, _: float(sum(state.counts)),
    "categories": lambda state, _: distinct_categories(state.category_bits),
    **{name: _window(i) for i, name in enumerate(WINDOW_FEATURES)},
}


def distinct_categories(bits: int) -> float:
    """Linear counting: ``m ln(m / zeros)`` distinct values for ``m`` bits, ``zeros`` unset."""
    zeros = CATEGORY_BITS - bits.bit_count()
    if zeros == 0:
        zeros = 1  # saturated: report the largest estimate the bitmap can give
    return CATEGORY_BITS * math.log(CATEGORY_BITS / zeros)
