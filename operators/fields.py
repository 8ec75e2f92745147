"""The strict readers of a decoded JSON event's fields (``operators.decoding``): each returns
the field's value or raises :class:`Invalid` with a fixed reason (safe as a metric label) and a
detail that says what was wrong."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

from operators.events import (
    BAD_TIMESTAMP,
    MAX_ID_LENGTH,
    MAX_QUANTITY,
    MAX_TEXT_LENGTH,
    MAX_TS_MS,
    MISSING_FIELD,
    OUT_OF_RANGE,
    WRONG_TYPE,
    EventLimits,
)

# The shape of an ISO 8601 time, exactly as the JSON Schema's pattern (ASCII digits only).
_ISO8601: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?"
    r"( UTC|Z|[+-][0-9]{2}:?[0-9]{2})?"
)
INT64: Final = 2**63  # integer ids must fit a signed 64-bit integer, as exports' ids do


class Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def as_text(name: str, raw: object, integers: bool, max_length: int) -> str:
    if type(raw) is str and len(raw) <= max_length and raw.isascii():
        return raw  # the common case: ASCII text has no lone surrogate
    # Integer ids are common in exports (REES46, UCI); accept them as their decimal text.
    if integers and isinstance(raw, float) and raw.is_integer() and -INT64 <= raw < INT64:
        raw = int(raw)  # 7.0 is an integer to JSON Schema too
    if integers and isinstance(raw, int) and not isinstance(raw, bool):
        if not -INT64 <= raw < INT64:
            raise Invalid(OUT_OF_RANGE, f"{name!r} must be a 64-bit integer or a string")
        return str(raw)
    if not isinstance(raw, str):
        kinds = "a string or an integer" if integers else "a string"
        raise Invalid(WRONG_TYPE, f"{name!r} must be {kinds}, got {type(raw).__name__}")
    if len(raw) > max_length:
        raise Invalid(OUT_OF_RANGE, f"{name!r} is longer than {max_length} characters")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800"): no UTF-8 form, no Redis key
        raise Invalid(WRONG_TYPE, f"{name!r} holds a lone surrogate, not text") from None
    return raw


def identifier(doc: dict[str, object], name: str) -> str:
    raw = doc.get(name)
    if raw is None:
        raise Invalid(MISSING_FIELD, f"required field {name!r} is missing")
    value = as_text(name, raw, True, MAX_ID_LENGTH)
    if not value:
        raise Invalid(OUT_OF_RANGE, f"{name!r} must have 1 to {MAX_ID_LENGTH} characters")
    return value


def text(
    doc: dict[str, object], name: str, *, required: bool = False, integers: bool = True
) -> str | None:
    raw = doc.get(name)
    if raw is None:
        if required:
            raise Invalid(MISSING_FIELD, f"required field {name!r} is missing")
        return None
    return as_text(name, raw, integers, MAX_TEXT_LENGTH)


def number(doc: dict[str, object], name: str, upper: float) -> float | None:
    raw = doc.get(name)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise Invalid(WRONG_TYPE, f"{name!r} must be a number, got {type(raw).__name__}")
    if not 0 <= raw <= upper:  # also refuses infinities (and NaN, which compares false)
        raise Invalid(OUT_OF_RANGE, f"{name!r} must be between 0 and {upper:g}, got {short(raw)}")
    return float(raw)


def quantity(doc: dict[str, object]) -> int | None:
    raw = doc.get("quantity")
    if raw is None:
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)  # 2.0 is an integer to JSON Schema too
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise Invalid(WRONG_TYPE, f"'quantity' must be an integer, got {type(raw).__name__}")
    if not 0 <= raw <= MAX_QUANTITY:
        raise Invalid(OUT_OF_RANGE, f"'quantity' must be between 0 and {MAX_QUANTITY}")
    if isinstance(raw, float):
        raise Invalid(WRONG_TYPE, f"'quantity' must be an integer, got {short(raw)}")
    return raw


def timestamp(doc: dict[str, object], limits: EventLimits) -> int:
    raw = doc.get("ts")
    if raw is None:
        raise Invalid(MISSING_FIELD, "required field 'ts' is missing")
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise Invalid(WRONG_TYPE, "'ts' must be epoch milliseconds or an ISO 8601 string")
    if isinstance(raw, str):
        ts_ms = iso8601_ms(raw)
    elif isinstance(raw, float) and not raw.is_integer():  # also infinities and NaN
        raise Invalid(BAD_TIMESTAMP, f"'ts' must be whole epoch milliseconds, got {short(raw)}")
    else:
        ts_ms = int(raw)
    if not limits.min_ts_ms <= ts_ms < MAX_TS_MS:
        low = datetime.fromtimestamp(limits.min_ts_ms / 1000, UTC).date().isoformat()
        raise Invalid(
            BAD_TIMESTAMP, f"'ts' {short(raw)} is outside {low}..2100-01-01 (epoch ms expected)"
        )
    return ts_ms


def short(raw: object) -> str:
    return repr(raw)[:64]


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def iso8601_ms(raw: str) -> int:
    """ISO 8601 to epoch ms, exactly; a time without an offset is taken as UTC."""
    if _ISO8601.fullmatch(raw) is None:
        raise Invalid(BAD_TIMESTAMP, f"'ts' {raw[:64]!r} is not ISO 8601")
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" UTC", "+00:00"))
    except ValueError:
        raise Invalid(BAD_TIMESTAMP, f"'ts' {raw[:64]!r} is not a real date and time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // timedelta(milliseconds=1)
