"""Decoding raw Kafka messages into events (``operators.events``).

``decode_event`` never raises, whatever the bytes: it returns a :class:`Rejected` whose
``reason`` is one of a small fixed set (safe as a metric label) and whose ``detail`` says what
was wrong, so the shell can dead-letter the original bytes with a clear explanation. It agrees
with ``stream/event.schema.json`` (a test runs both on one corpus) and is stricter where a
schema cannot speak: strict UTF-8 without lone surrogates, no duplicate keys, bounded numbers,
lengths and nesting, a real calendar date, an event time not ahead of the record's own time.
The common event takes one quick pass (``_plain_event``); anything else the careful one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final, TypeGuard

from operators.erasure import ERASE, VIAS, EraseRequest
from operators.events import (
    BAD_TIMESTAMP,
    DEFAULT_LIMITS,
    EMPTY,
    EVENT_TYPES,
    FUTURE_TIMESTAMP,
    KEY_MISMATCH,
    MAX_AMOUNT,
    MAX_ID_LENGTH,
    MAX_QUANTITY,
    MAX_TEXT_LENGTH,
    MAX_TS_MS,
    MISSING_FIELD,
    NOT_JSON,
    NOT_OBJECT,
    OUT_OF_RANGE,
    OVERSIZED,
    UNKNOWN_TYPE,
    WRONG_TYPE,
    Event,
    EventLimits,
    Rejected,
)
from operators.strict_json import NotJson, parse

# The shape of an ISO 8601 time, exactly as the JSON Schema's pattern (ASCII digits only).
_ISO8601: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?"
    r"( UTC|Z|[+-][0-9]{2}:?[0-9]{2})?"
)
INT64: Final = 2**63  # integer ids must fit a signed 64-bit integer, as exports' ids do


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def decode_event(
    key: bytes | None,
    value: bytes | None,
    limits: EventLimits = DEFAULT_LIMITS,
    received_ms: int | None = None,
) -> Event | Rejected:
    """Decode and validate one message; the key must equal ``user_id`` (see README, "Events").

    ``received_ms`` is when the message was produced (its Kafka timestamp, or the time it was
    read): an event dated more than ``limits.max_future_ms`` after it is rejected, so one
    runaway clock cannot move a partition's watermark. None skips that check.
    """
    try:
        return _decode(key, value, limits, received_ms)
    except _Invalid as exc:
        return Rejected(exc.reason, exc.detail)
    except Exception as exc:  # the contract is "never raises": a bug here must not stop the loop
        return Rejected(NOT_JSON, f"undecodable message ({type(exc).__name__})")


def _decode(
    key: bytes | None,
    value: bytes | None,
    limits: EventLimits,
    received_ms: int | None,
) -> Event:
    if not value:
        raise _Invalid(EMPTY, "empty message (a tombstone or an empty value)")
    if len(value) > limits.max_bytes:
        raise _Invalid(OVERSIZED, f"message is {len(value)} bytes, the limit is {limits.max_bytes}")
    try:
        doc = parse(value)
    except NotJson as exc:
        raise _Invalid(NOT_JSON, str(exc)) from None
    if not isinstance(doc, dict):
        raise _Invalid(NOT_OBJECT, f"expected a JSON object, got {type(doc).__name__}")
    event = _plain_event(doc, limits) or _event_from(doc, limits)
    if received_ms is not None and event.ts_ms > received_ms + limits.max_future_ms:
        raise _Invalid(
            FUTURE_TIMESTAMP,
            f"event time {event.ts_ms} is "
            f"{(event.ts_ms - received_ms) / 1000:.0f} s after the message was "
            f"produced ({received_ms}); the limit is {limits.max_future_ms // 1000} s",
        )
    # One user's events must share a partition, or their state would split across partitions.
    if key is None or key != event.user_id.encode():
        shown = "none" if key is None else repr(key[:MAX_ID_LENGTH])
        raise _Invalid(KEY_MISMATCH, f"message key {shown} must equal user_id {event.user_id!r}")
    return event


_TYPES: Final = frozenset(EVENT_TYPES)


def _plain_event(doc: dict[str, object], limits: EventLimits) -> Event | None:
    """The common event in one step: ASCII string ids and texts within their lengths, integer
    epoch milliseconds in range, plain numbers in range. None when any field needs a closer
    look: ``_event_from`` then converts it (an integer id) or says exactly what is wrong."""
    get = doc.get
    event_type, event_id, user_id, ts = get("type"), get("event_id"), get("user_id"), get("ts")
    amount, quantity = get("amount"), get("quantity")
    try:
        currency, item_id = _plain_text(get("currency")), _plain_text(get("item_id"))
        category, session_id = _plain_text(get("category")), _plain_text(get("session_id"))
    except _NotPlain:
        return None
    if not (
        type(event_type) is str
        and event_type in _TYPES
        and type(event_id) is str
        and 0 < len(event_id) <= MAX_ID_LENGTH
        and event_id.isascii()
        and type(user_id) is str
        and 0 < len(user_id) <= MAX_ID_LENGTH
        and user_id.isascii()
        and type(ts) is int
        and limits.min_ts_ms <= ts < MAX_TS_MS
        and (amount is None or (_number_type(amount) and 0 <= amount <= MAX_AMOUNT))
        and (quantity is None or (type(quantity) is int and 0 <= quantity <= MAX_QUANTITY))
    ):
        return None
    return Event(
        event_id,
        user_id,
        event_type,
        ts,
        None if amount is None else float(amount),
        currency,
        item_id,
        category,
        session_id,
        quantity,
    )


def _number_type(raw: object) -> TypeGuard[int | float]:
    return type(raw) is int or type(raw) is float  # exactly: not bool


class _NotPlain(Exception):
    pass


def _plain_text(raw: object) -> str | None:
    if raw is None or (type(raw) is str and len(raw) <= MAX_TEXT_LENGTH and raw.isascii()):
        return raw
    raise _NotPlain


def _event_from(doc: dict[str, object], limits: EventLimits) -> Event:
    event_type = _text(doc, "type", required=True, integers=False)
    if event_type == ERASE:  # not an event: a request (never plain, so always here)
        return _erase_from(doc, limits)
    if event_type not in EVENT_TYPES:
        raise _Invalid(UNKNOWN_TYPE, f"type {event_type!r} is not one of {', '.join(EVENT_TYPES)}")
    return Event(
        event_id=_identifier(doc, "event_id"),
        user_id=_identifier(doc, "user_id"),
        type=str(event_type),
        ts_ms=_timestamp(doc, limits),
        amount=_number(doc, "amount", MAX_AMOUNT),
        currency=_text(doc, "currency", integers=False),
        item_id=_text(doc, "item_id"),
        category=_text(doc, "category"),
        session_id=_text(doc, "session_id"),
        quantity=_quantity(doc),
    )


def _erase_from(doc: dict[str, object], limits: EventLimits) -> EraseRequest:
    """An erasure request (``operators.erasure``): the event's ids and time, who and how."""
    via = _text(doc, "via", required=True, integers=False)
    if via not in VIAS:
        raise _Invalid(OUT_OF_RANGE, f"'via' of an erase must be one of {', '.join(VIAS)}")
    return EraseRequest(
        event_id=_identifier(doc, "event_id"),
        user_id=_identifier(doc, "user_id"),
        type=ERASE,
        ts_ms=_timestamp(doc, limits),
        requested_by=str(_text(doc, "requested_by", required=True, integers=False)),
        via=via,
    )


def _as_text(name: str, raw: object, integers: bool, max_length: int) -> str:
    if type(raw) is str and len(raw) <= max_length and raw.isascii():
        return raw  # the common case: ASCII text has no lone surrogate
    # Integer ids are common in exports (REES46, UCI); accept them as their decimal text.
    if integers and isinstance(raw, float) and raw.is_integer() and -INT64 <= raw < INT64:
        raw = int(raw)  # 7.0 is an integer to JSON Schema too
    if integers and isinstance(raw, int) and not isinstance(raw, bool):
        if not -INT64 <= raw < INT64:
            raise _Invalid(OUT_OF_RANGE, f"{name!r} must be a 64-bit integer or a string")
        return str(raw)
    if not isinstance(raw, str):
        kinds = "a string or an integer" if integers else "a string"
        raise _Invalid(WRONG_TYPE, f"{name!r} must be {kinds}, got {type(raw).__name__}")
    if len(raw) > max_length:
        raise _Invalid(OUT_OF_RANGE, f"{name!r} is longer than {max_length} characters")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800"): no UTF-8 form, no Redis key
        raise _Invalid(WRONG_TYPE, f"{name!r} holds a lone surrogate, not text") from None
    return raw


def _identifier(doc: dict[str, object], name: str) -> str:
    raw = doc.get(name)
    if raw is None:
        raise _Invalid(MISSING_FIELD, f"required field {name!r} is missing")
    text = _as_text(name, raw, True, MAX_ID_LENGTH)
    if not text:
        raise _Invalid(OUT_OF_RANGE, f"{name!r} must have 1 to {MAX_ID_LENGTH} characters")
    return text


def _text(
    doc: dict[str, object], name: str, *, required: bool = False, integers: bool = True
) -> str | None:
    raw = doc.get(name)
    if raw is None:
        if required:
            raise _Invalid(MISSING_FIELD, f"required field {name!r} is missing")
        return None
    return _as_text(name, raw, integers, MAX_TEXT_LENGTH)


def _number(doc: dict[str, object], name: str, upper: float) -> float | None:
    raw = doc.get(name)
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _Invalid(WRONG_TYPE, f"{name!r} must be a number, got {type(raw).__name__}")
    if not 0 <= raw <= upper:  # also refuses infinities (and NaN, which compares false)
        raise _Invalid(OUT_OF_RANGE, f"{name!r} must be between 0 and {upper:g}, got {_short(raw)}")
    return float(raw)


def _quantity(doc: dict[str, object]) -> int | None:
    raw = doc.get("quantity")
    if raw is None:
        return None
    if isinstance(raw, float) and raw.is_integer():
        raw = int(raw)  # 2.0 is an integer to JSON Schema too
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _Invalid(WRONG_TYPE, f"'quantity' must be an integer, got {type(raw).__name__}")
    if not 0 <= raw <= MAX_QUANTITY:
        raise _Invalid(OUT_OF_RANGE, f"'quantity' must be between 0 and {MAX_QUANTITY}")
    if isinstance(raw, float):
        raise _Invalid(WRONG_TYPE, f"'quantity' must be an integer, got {_short(raw)}")
    return raw


def _timestamp(doc: dict[str, object], limits: EventLimits) -> int:
    raw = doc.get("ts")
    if raw is None:
        raise _Invalid(MISSING_FIELD, "required field 'ts' is missing")
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise _Invalid(WRONG_TYPE, "'ts' must be epoch milliseconds or an ISO 8601 string")
    if isinstance(raw, str):
        ts_ms = _iso8601_ms(raw)
    elif isinstance(raw, float) and not raw.is_integer():  # also infinities and NaN
        raise _Invalid(BAD_TIMESTAMP, f"'ts' must be whole epoch milliseconds, got {_short(raw)}")
    else:
        ts_ms = int(raw)
    if not limits.min_ts_ms <= ts_ms < MAX_TS_MS:
        low = datetime.fromtimestamp(limits.min_ts_ms / 1000, UTC).date().isoformat()
        raise _Invalid(
            BAD_TIMESTAMP, f"'ts' {_short(raw)} is outside {low}..2100-01-01 (epoch ms expected)"
        )
    return ts_ms


def _short(raw: object) -> str:
    return repr(raw)[:64]


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def _iso8601_ms(text: str) -> int:
    """ISO 8601 to epoch ms, exactly; a time without an offset is taken as UTC."""
    if _ISO8601.fullmatch(text) is None:
        raise _Invalid(BAD_TIMESTAMP, f"'ts' {text[:64]!r} is not ISO 8601")
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" UTC", "+00:00"))
    except ValueError:
        raise _Invalid(BAD_TIMESTAMP, f"'ts' {text[:64]!r} is not a real date and time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return (parsed - _EPOCH) // timedelta(milliseconds=1)
