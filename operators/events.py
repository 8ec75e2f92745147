"""Input events: the value type, and decoding raw Kafka messages into it.

``decode_event`` never raises on bad input: it returns a :class:`Rejected` whose ``reason`` is
one of a small fixed set (safe as a metric label) and whose ``detail`` says what was wrong, so
the shell can dead-letter the original bytes with a clear explanation.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

EVENT_TYPES: Final = ("view", "click", "add_to_cart", "remove_from_cart", "purchase", "cancel")

# Rejection reasons: a closed set, used as the `reason` metric label.
NOT_JSON: Final = "not_json"
NOT_OBJECT: Final = "not_object"
MISSING_FIELD: Final = "missing_field"
WRONG_TYPE: Final = "wrong_type"
BAD_TIMESTAMP: Final = "bad_timestamp"
OUT_OF_RANGE: Final = "out_of_range"
UNKNOWN_TYPE: Final = "unknown_type"
OVERSIZED: Final = "oversized"
KEY_MISMATCH: Final = "key_mismatch"
REJECTION_REASONS: Final = (
    NOT_JSON, NOT_OBJECT, MISSING_FIELD, WRONG_TYPE, BAD_TIMESTAMP,
    OUT_OF_RANGE, UNKNOWN_TYPE, OVERSIZED, KEY_MISMATCH,
)

MAX_ID_LENGTH: Final = 128
MAX_TEXT_LENGTH: Final = 256
MAX_AMOUNT: Final = 1e9
MAX_QUANTITY: Final = 1_000_000
# Event time must fall in [2000-01-01, 2100-01-01): anything else is a unit or clock bug upstream
# (seconds sent as milliseconds, a zero timestamp), not a real event.
MIN_TS_MS: Final = 946_684_800_000
MAX_TS_MS: Final = 4_102_444_800_000


@dataclass(frozen=True, slots=True)
class Event:
    """One validated user event. ``ts_ms`` is event time in epoch milliseconds (UTC)."""

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


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def decode_event(key: bytes | None, value: bytes, max_bytes: int = 65_536) -> Event | Rejected:
    """Decode and validate one message; the key must equal ``user_id`` (see README, "Events")."""
    if len(value) > max_bytes:
        return Rejected(OVERSIZED, f"message is {len(value)} bytes, the limit is {max_bytes}")
    try:
        doc = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Rejected(NOT_JSON, f"not valid UTF-8 JSON: {exc}")
    except RecursionError:
        return Rejected(NOT_JSON, "JSON nested too deeply")
    if not isinstance(doc, dict):
        return Rejected(NOT_OBJECT, f"expected a JSON object, got {type(doc).__name__}")
    try:
        event = _event_from(doc)
    except _Invalid as exc:
        return Rejected(exc.reason, exc.detail)
    # One user's events must share a partition, or their state would split across partitions.
    if key is None or key != event.user_id.encode():
        shown = "none" if key is None else repr(key[:MAX_ID_LENGTH])
        return Rejected(KEY_MISMATCH, f"message key {shown} must equal user_id {event.user_id!r}")
    return event


def _event_from(doc: dict[str, object]) -> Event:
    event_type = _text(doc, "type", required=True)
    if event_type not in EVENT_TYPES:
        raise _Invalid(UNKNOWN_TYPE, f"type {event_type!r} is not one of {', '.join(EVENT_TYPES)}")
    return Event(
        event_id=_identifier(doc, "event_id"),
        user_id=_identifier(doc, "user_id"),
        type=str(event_type),
        ts_ms=_timestamp(doc),
        amount=_number(doc, "amount", MAX_AMOUNT),
        currency=_text(doc, "currency"),
        item_id=_text(doc, "item_id"),
        category=_text(doc, "category"),
        session_id=_text(doc, "session_id"),
        quantity=_quantity(doc),
    )


def _identifier(doc: dict[str, object], name: str) -> str:
    raw = doc.get(name)
    if raw is None:
        raise _Invalid(MISSING_FIELD, f"required field {name!r} is missing")
    # Integer ids are common in exports (REES46, UCI); accept them as their decimal text.
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        raise _Invalid(WRONG_TYPE, f"{name!r} must be a string, got {type(raw).__name__}")
    if not raw or len(raw) > MAX_ID_LENGTH:
        raise _Invalid(OUT_OF_RANGE, f"{name!r} must have 1 to {MAX_ID_LENGTH} characters")
    return raw


def _text(doc: dict[str, object], name: str, *, required: bool = False) -> str | None:
    raw = doc.get(name)
    if raw is None:
        if required:
            raise _Invalid(MISSING_FIELD, f"required field {name!r} is missing")
        return None
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        raise _Invalid(WRONG_TYPE, f"{name!r} must be a string, got {type(raw).__name__}")
    if len(raw) > MAX_TEXT_LENGTH:
        raise _Invalid(OUT_OF_RANGE, f"{name!r} is longer than {MAX_TEXT_LENGTH} characters")
    return raw


def _number(doc: dict[str, object], name: str, upper: float) -> float | None:
    raw = doc.get(name)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _Invalid(WRONG_TYPE, f"{name!r} must be a number, got {type(raw).__name__}")
    value = float(raw)
    if not math.isfinite(value) or value < 0 or value > upper:
        raise _Invalid(OUT_OF_RANGE, f"{name!r} must be between 0 and {upper:g}, got {raw!r}")
    return value


def _quantity(doc: dict[str, object]) -> int | None:
    raw = doc.get("quantity")
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise _Invalid(WRONG_TYPE, f"'quantity' must be an integer, got {type(raw).__name__}")
    if not 0 <= raw <= MAX_QUANTITY:
        raise _Invalid(OUT_OF_RANGE, f"'quantity' must be between 0 and {MAX_QUANTITY}")
    return raw


def _timestamp(doc: dict[str, object]) -> int:
    raw = doc.get("ts")
    if raw is None:
        raise _Invalid(MISSING_FIELD, "required field 'ts' is missing")
    if isinstance(raw, bool):
        raise _Invalid(WRONG_TYPE, "'ts' must be epoch milliseconds or an ISO 8601 string")
    if isinstance(raw, int | float):
        if not math.isfinite(raw):
            raise _Invalid(BAD_TIMESTAMP, f"'ts' is not a finite number: {raw!r}")
        ts_ms = int(raw)
    elif isinstance(raw, str):
        ts_ms = _iso8601_ms(raw)
    else:
        raise _Invalid(WRONG_TYPE, "'ts' must be epoch milliseconds or an ISO 8601 string")
    if not MIN_TS_MS <= ts_ms < MAX_TS_MS:
        raise _Invalid(
            BAD_TIMESTAMP, f"'ts' {raw!r} is outside 2000-01-01..2100-01-01 (epoch ms expected)"
        )
    return ts_ms


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _iso8601_ms(text: str) -> int:
    """ISO 8601 to epoch ms, exactly; a time without an offset is taken as UTC."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" UTC", "+00:00"))
    except ValueError:
        raise _Invalid(BAD_TIMESTAMP, f"'ts' {text[:64]!r} is not ISO 8601") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // timedelta(milliseconds=1)
