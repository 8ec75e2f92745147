"""Input events: the value type, its limits, and the reasons a message is rejected.

Decoding raw Kafka messages into events, with the checks behind each rejection, is
``operators.decoding``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

EVENT_TYPES: Final = ("view", "click", "add_to_cart", "remove_from_cart", "purchase", "cancel")

# Rejection reasons: a closed set, used as the `reason` metric label.
EMPTY: Final = "empty"
NOT_JSON: Final = "not_json"
NOT_OBJECT: Final = "not_object"
MISSING_FIELD: Final = "missing_field"
WRONG_TYPE: Final = "wrong_type"
BAD_TIMESTAMP: Final = "bad_timestamp"
FUTURE_TIMESTAMP: Final = "future_timestamp"
OUT_OF_RANGE: Final = "out_of_range"
UNKNOWN_TYPE: Final = "unknown_type"
OVERSIZED: Final = "oversized"
KEY_MISMATCH: Final = "key_mismatch"
PROCESSING_ERROR: Final = "processing_error"  # valid, but applying it raised (a bug: see loop)
REJECTION_REASONS: Final = (
    EMPTY,
    NOT_JSON,
    NOT_OBJECT,
    MISSING_FIELD,
    WRONG_TYPE,
    BAD_TIMESTAMP,
    FUTURE_TIMESTAMP,
    OUT_OF_RANGE,
    UNKNOWN_TYPE,
    OVERSIZED,
    KEY_MISMATCH,
    PROCESSING_ERROR,
)

MAX_ID_LENGTH: Final = 128
MAX_TEXT_LENGTH: Final = 256
MAX_AMOUNT: Final = 1e9
MAX_QUANTITY: Final = 1_000_000
# Event time must fall in [min_ts_ms, 2100-01-01). The lower bound is a setting (default
# 1980-01-01, so histories from the 1980s replay) and still catches epoch *seconds* sent as
# milliseconds: today's epoch seconds read as milliseconds fall in January 1970.
DEFAULT_MIN_TS_MS: Final = 315_532_800_000
MAX_TS_MS: Final = 4_102_444_800_000


@dataclass(frozen=True, slots=True)
class EventLimits:
    """What the decoder accepts beyond the schema's fixed rules (all from the settings)."""

    max_bytes: int = 65_536
    min_ts_ms: int = DEFAULT_MIN_TS_MS
    max_future_ms: int = 300_000  # event time at most this far ahead of the record's time


DEFAULT_LIMITS: Final = EventLimits()


@dataclass(slots=True)
class Event:
    """One validated user event. ``ts_ms`` is event time in epoch milliseconds (UTC).

    Treated as immutable, but not frozen: a frozen dataclass sets each field through
    ``object.__setattr__``, which made building one cost more than parsing its JSON."""

    event_id: str
    user_id: str
    type: str
    ts_ms: int
    amount: float | None = None
    currency: str | None = None
    item_id: str | None = None
    category: str | None = None
    session_id: str | None = None
    quantity: int | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A message that is not a valid event: ``reason`` is a fixed code, ``detail`` is prose."""

    reason: str
    detail: str
