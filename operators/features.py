"""Per-user rolling features: a fixed-size record updated in event time.

Each user's record holds exact lifetime counts per event type and exact gross spend (in cents),
plus exponentially time-decayed counts and spend. A decayed value ``v`` stored at reference time
``ref`` is worth ``v * 2 ** (-(t - ref) / half_life)`` at any later time ``t``, so features
evaluated for a user who went quiet are correct without waiting for their next event; an
out-of-order event is added with the weight its age gives it, so the result does not depend on
arrival order.

Feature formulas (``h`` = half-life, default 30 days; ``t`` = the evaluation time):
- ``recent_<type>s`` = sum over the user's events of that type of ``2 ** (-(t - ts) / h)``;
- ``recent_spend``  = sum over purchases of ``amount * 2 ** (-(t - ts) / h)``;
- ``days_since_purchase`` = ``(t - last purchase time) / 1 day``, capped at 365 (also when none).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from typing import Final

from operators.events import EVENT_TYPES, Event

DAY_MS: Final = 86_400_000
RECENCY_CAP_DAYS: Final = 365.0
RECENT_IDS: Final = 4  # event ids remembered per user to drop producer-retry duplicates
NO_SEGMENT: Final = -1

_TYPE_INDEX: Final = {name: i for i, name in enumerate(EVENT_TYPES)}
_PURCHASE: Final = _TYPE_INDEX["purchase"]
_N: Final = len(EVENT_TYPES)
_FORMAT_VERSION: Final = 1
# version, first/last seen, last purchase, decay reference, spend cents, counts, decayed counts,
# decayed spend, recent event-id digests, segment, change seq. Little-endian, no padding.
_LAYOUT: Final = struct.Struct(f"<B q q q q q {_N}I {_N}d d {RECENT_IDS}Q h I")


@dataclass(frozen=True, slots=True)
class UserState:
    """One user's record. Times are epoch ms in event time; ``segment`` is -1 until assigned."""

    first_seen_ms: int
    last_seen_ms: int
    last_purchase_ms: int  # 0: no purchase yet
    decay_ref_ms: int  # the time the decayed values are evaluated at
    spend_cents: int
    counts: tuple[int, ...]
    decayed_counts: tuple[float, ...]
    decayed_spend: float
    recent_event_ids: tuple[int, ...]
    segment: int = NO_SEGMENT
    seq: int = 0

    @property
    def events_total(self) -> int:
        return sum(self.counts)

    def count(self, event_type: str) -> int:
        return self.counts[_TYPE_INDEX[event_type]]


def event_digest(event_id: str) -> int:
    """A stable 64-bit digest (never Python's salted ``hash``): same id, same digest, anywhere."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


def is_duplicate(state: UserState | None, event: Event) -> bool:
    """True if this event id is among the user's last few: a redelivery or a producer retry."""
    return state is not None and event_digest(event.event_id) in state.recent_event_ids


def update_features(
    state: UserState | None, event: Event, half_life_ms: int, digest: int | None = None,
) -> UserState:
    """The user's record after ``event``. Pure; the caller drops duplicates first.

    ``digest`` is ``event_digest(event.event_id)`` if the caller has it already.
    """
    if state is None:
        state = UserState(
            first_seen_ms=event.ts_ms, last_seen_ms=event.ts_ms, last_purchase_ms=0,
            decay_ref_ms=event.ts_ms, spend_cents=0, counts=(0,) * _N,
            decayed_counts=(0.0,) * _N, decayed_spend=0.0, recent_event_ids=(0,) * RECENT_IDS,
        )
    index = _TYPE_INDEX[event.type]
    is_purchase = index == _PURCHASE
    amount = (event.amount or 0.0) if is_purchase else 0.0
    if event.ts_ms >= state.decay_ref_ms:
        # Move the reference forward: age everything, then add the new event at full weight.
        factor = _decay(event.ts_ms - state.decay_ref_ms, half_life_ms)
        ref, weight = event.ts_ms, 1.0
    else:
        factor, ref = 1.0, state.decay_ref_ms
        weight = _decay(state.decay_ref_ms - event.ts_ms, half_life_ms)
    decayed = [v * factor for v in state.decayed_counts]
    decayed[index] += weight
    counts = list(state.counts)
    counts[index] += 1
    if digest is None:
        digest = event_digest(event.event_id)
    # Built directly rather than with dataclasses.replace: this runs once per event.
    return UserState(
        first_seen_ms=min(state.first_seen_ms, event.ts_ms),
        last_seen_ms=max(state.last_seen_ms, event.ts_ms),
        last_purchase_ms=max(state.last_purchase_ms, event.ts_ms) if is_purchase
        else state.last_purchase_ms,
        decay_ref_ms=ref,
        spend_cents=state.spend_cents + round(amount * 100),
        counts=tuple(counts),
        decayed_counts=tuple(decayed),
        decayed_spend=state.decayed_spend * factor + amount * weight,
        recent_event_ids=(digest, *state.recent_event_ids[:-1]),
        segment=state.segment,
        seq=state.seq,
    )


SEGMENT_FEATURES: Final = (
    "recent_views", "recent_carts", "recent_purchases", "recent_spend", "days_since_purchase",
)


def segment_features(state: UserState, at_ms: int, half_life_ms: int) -> dict[str, float]:
    """The features segments are built on, evaluated at ``at_ms`` (see the module docstring)."""
    age = _decay(max(at_ms - state.decay_ref_ms, 0), half_life_ms)
    counts = state.decayed_counts
    if state.last_purchase_ms:
        recency = min((at_ms - state.last_purchase_ms) / DAY_MS, RECENCY_CAP_DAYS)
    else:
        recency = RECENCY_CAP_DAYS
    return {
        "recent_views": counts[_TYPE_INDEX["view"]] * age,
        "recent_carts": counts[_TYPE_INDEX["add_to_cart"]] * age,
        "recent_purchases": counts[_PURCHASE] * age,
        "recent_spend": state.decayed_spend * age,
        "days_since_purchase": max(recency, 0.0),
    }


def pack_state(state: UserState) -> bytes:
    """The record as stored: fixed size, versioned, independent of Python and River versions."""
    return _LAYOUT.pack(
        _FORMAT_VERSION, state.first_seen_ms, state.last_seen_ms, state.last_purchase_ms,
        state.decay_ref_ms, state.spend_cents, *state.counts, *state.decayed_counts,
        state.decayed_spend, *state.recent_event_ids, state.segment, state.seq,
    )


def unpack_state(data: bytes) -> UserState:
    fields = _LAYOUT.unpack(data)
    if fields[0] != _FORMAT_VERSION:
        raise ValueError(f"unknown user-state format version {fields[0]}")
    counts_at = 6
    decayed_at = counts_at + _N
    ids_at = decayed_at + _N + 1
    return UserState(
        first_seen_ms=fields[1], last_seen_ms=fields[2], last_purchase_ms=fields[3],
        decay_ref_ms=fields[4], spend_cents=fields[5],
        counts=tuple(fields[counts_at:decayed_at]),
        decayed_counts=tuple(fields[decayed_at:decayed_at + _N]),
        decayed_spend=fields[decayed_at + _N],
        recent_event_ids=tuple(fields[ids_at:ids_at + RECENT_IDS]),
        segment=fields[ids_at + RECENT_IDS], seq=fields[ids_at + RECENT_IDS + 1],
    )


STATE_SIZE_BYTES: Final = _LAYOUT.size


def _decay(elapsed_ms: int, half_life_ms: int) -> float:
    return float(2.0 ** (-elapsed_ms / half_life_ms))
