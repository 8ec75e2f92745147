"""Input events: the value type, and decoding raw Kafka messages into it.

``decode_event`` never raises, whatever the bytes: it returns a :class:`Rejected` whose
``reason`` is one of a small fixed set (safe as a metric label) and whose ``detail`` says what
was wrong, so the shell can dead-letter the original bytes with a clear explanation. It agrees
with ``stream/event.schema.json`` (a test runs both on one corpus) and is stricter where a
schema cannot speak: strict UTF-8 without lone surrogates, no duplicate keys, bounded numbers,
lengths and nesting, a real calendar date, an event time not ahead of the record's own time.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import orjson

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
MAX_DEPTH: Final = 16  # nesting of objects and arrays, counting the event itself
MAX_INTEGER_DIGITS: Final = 30  # longer integers read as infinite: out of every range
INT64: Final = 2**63  # integer ids must fit a signed 64-bit integer, as exports' ids do
# Event time must fall in [min_ts_ms, 2100-01-01). The lower bound is a setting (default
# 1980-01-01, so histories from the 1980s replay) and still catches epoch *seconds* sent as
# milliseconds: today's epoch seconds read as milliseconds fall in January 1970.
DEFAULT_MIN_TS_MS: Final = 315_532_800_000
MAX_TS_MS: Final = 4_102_444_800_000
# The shape of an ISO 8601 time, exactly as the JSON Schema's pattern (ASCII digits only).
_ISO8601: Final = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?)?"
    r"( UTC|Z|[+-][0-9]{2}:?[0-9]{2})?"
)


@dataclass(frozen=True, slots=True)
class EventLimits:
    """What the decoder accepts beyond the schema's fixed rules (all from the settings)."""

    max_bytes: int = 65_536
    min_ts_ms: int = DEFAULT_MIN_TS_MS
    max_future_ms: int = 300_000  # event time at most this far ahead of the record's time


DEFAULT_LIMITS: Final = EventLimits()


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
    doc = _fast_parse(value)
    if doc is None:  # not the plain case: the strict parser says exactly what is wrong
        doc = _strict_parse(value)
    if not isinstance(doc, dict):
        raise _Invalid(NOT_OBJECT, f"expected a JSON object, got {type(doc).__name__}")
    if any(type(v) is dict or type(v) is list for v in doc.values()):
        _check_depth(doc)
    event = _event_from(doc, limits)
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


# A JSON string followed by a colon: a key (a string value is followed by , ] or }).
_KEY: Final = re.compile(rb'"(?:[^"\\]|\\.)*"\s*:')


def _fast_parse(value: bytes) -> object | None:
    """orjson's parse when it settles the question (~10x faster than the stdlib's); None when
    the strict parser must look: orjson refused the bytes, or a key may be repeated (orjson
    keeps the last, we refuse the message)."""
    try:
        doc: object = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return doc
    keys = len(doc)
    if any(type(v) is dict or type(v) is list for v in doc.values()):
        keys = _count_keys(doc)
    return doc if len(_KEY.findall(value)) == keys else None


def _count_keys(node: object) -> int:
    if isinstance(node, dict):
        return len(node) + sum(_count_keys(v) for v in node.values())
    if isinstance(node, list):
        return sum(_count_keys(v) for v in node)
    return 0


def _strict_parse(value: bytes) -> object:
    try:
        text = value.decode("utf-8")  # strict: no UTF-16/32 guessing, no encoded surrogates
    except UnicodeDecodeError as exc:
        raise _Invalid(NOT_JSON, f"not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(
            text, object_pairs_hook=_object, parse_int=_integer, parse_constant=_no_constant
        )
    except json.JSONDecodeError as exc:
        raise _Invalid(NOT_JSON, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise _Invalid(NOT_JSON, "JSON nested too deeply") from None


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    doc = dict(pairs)
    if len(doc) != len(pairs):  # which value would win is a parser's accident: refuse
        twice = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise _Invalid(NOT_JSON, f"duplicate key {twice[:MAX_ID_LENGTH]!r}")
    return doc


def _integer(text: str) -> int | float:
    # Python refuses to read integers over 4,300 digits (ValueError); none is meaningful here.
    if len(text) > MAX_INTEGER_DIGITS:
        return -math.inf if text.startswith("-") else math.inf
    return int(text)


def _no_constant(name: str) -> float:
    raise _Invalid(NOT_JSON, f"{name} is not JSON")


def _check_depth(doc: dict[str, object]) -> None:
    """Objects and arrays nest at most ``MAX_DEPTH`` deep, counted level by level."""
    level: list[object] = [doc]
    depth = 1
    while level:
        if depth > MAX_DEPTH:
            raise _Invalid(NOT_JSON, f"JSON nested deeper than {MAX_DEPTH} levels")
        below: list[object] = []
        for node in level:
            children = node.values() if isinstance(node, dict) else node
            below += [c for c in children if isinstance(c, dict | list)]  # type: ignore[attr-defined]
        level = below
        depth += 1


def _event_from(doc: dict[str, object], limits: EventLimits) -> Event:
    event_type = _text(doc, "type", required=True, integers=False)
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
