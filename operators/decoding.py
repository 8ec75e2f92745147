"""Decoding raw Kafka messages into events (``operators.events``).

``decode_event`` never raises, whatever the bytes: it returns a :class:`Rejected` whose
``reason`` is one of a small fixed set (safe as a metric label) and whose ``detail`` says what
was wrong, so the shell can dead-letter the original bytes with a clear explanation. It agrees
with ``stream/event.schema.json`` (a test runs both on one corpus) and is stricter where a
schema cannot speak: strict UTF-8 without lone surrogates, no duplicate keys, bounded numbers,
lengths and nesting, a real calendar date, an event time not ahead of the record's own time.
The common message takes one quick pass (``_plain``); anything else the careful one.
"""

from __future__ import annotations

from typing import Final

import orjson

from operators.erasure import ERASE, VIAS, EraseRequest
from operators.events import (
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
    NOT_JSON,
    NOT_OBJECT,
    OUT_OF_RANGE,
    OVERSIZED,
    UNKNOWN_TYPE,
    Event,
    EventLimits,
    Rejected,
)
from operators.fields import (
    Invalid,
    identifier,
    number,
    quantity,
    text,
    timestamp,
)
from operators.strict_json import NotJson, parse


def decode_event(
    key: bytes | None,
    value: bytes | None,
    limits: EventLimits = DEFAULT_LIMITS,
    received_ms: int | None = None,
) -> Event | Rejected:
    """Decode and validate one message; the key must equal ``user_id`` (docs/contract.md).

    ``received_ms`` is when the message was produced (its Kafka timestamp, or the time it was
    read): an event dated more than ``limits.max_future_ms`` after it is rejected, so one
    runaway clock cannot move a partition's watermark. None skips that check.
    """
    try:
        return _plain(key, value, limits, received_ms) or _decode(key, value, limits, received_ms)
    except Invalid as exc:
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
        raise Invalid(EMPTY, "empty message (a tombstone or an empty value)")
    if len(value) > limits.max_bytes:
        raise Invalid(OVERSIZED, f"message is {len(value)} bytes, the limit is {limits.max_bytes}")
    try:
        doc = parse(value)
    except NotJson as exc:
        raise Invalid(NOT_JSON, str(exc)) from None
    if not isinstance(doc, dict):
        raise Invalid(NOT_OBJECT, f"expected a JSON object, got {type(doc).__name__}")
    event = _event_from(doc, limits)
    if received_ms is not None and event.ts_ms > received_ms + limits.max_future_ms:
        raise Invalid(
            FUTURE_TIMESTAMP,
            f"event time {event.ts_ms} is "
            f"{(event.ts_ms - received_ms) / 1000:.0f} s after the message was "
            f"produced ({received_ms}); the limit is {limits.max_future_ms // 1000} s",
        )
    # One user's events must share a partition, or their state would split across partitions.
    if key is None or key != event.user_id.encode():
        shown = "none" if key is None else repr(key[:MAX_ID_LENGTH])
        raise Invalid(KEY_MISMATCH, f"message key {shown} must equal user_id {event.user_id!r}")
    return event


_TYPES: Final = frozenset(EVENT_TYPES)


def _plain(
    key: bytes | None, value: bytes | None, limits: EventLimits, received_ms: int | None
) -> Event | None:
    """The common message in one pass, every check inline (a call costs as much as a check):
    a flat JSON object (one brace, no bracket) whose every key has a colon of its own, so none
    is repeated; ASCII string ids and texts within their lengths, integer epoch milliseconds
    in range, plain numbers in range; in time; keyed by its user. None for anything else,
    which ``_decode`` then accepts or rejects with the exact reason."""
    if not value or len(value) > limits.max_bytes:
        return None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict or value.count(b"{") != 1 or b"[" in value:
        return None
    if value.count(b":") != len(doc):
        return None
    get = doc.get
    event_type, event_id, user_id, ts = get("type"), get("event_id"), get("user_id"), get("ts")
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
        and (received_ms is None or ts <= received_ms + limits.max_future_ms)
        and key is not None
        and key == user_id.encode()
    ):
        return None
    amount, quantity = get("amount"), get("quantity")
    if not (
        (
            amount is None
            or ((type(amount) is float or type(amount) is int) and 0 <= amount <= MAX_AMOUNT)
        )
        and (quantity is None or (type(quantity) is int and 0 <= quantity <= MAX_QUANTITY))
    ):
        return None
    currency, item_id = get("currency"), get("item_id")
    category, session_id = get("category"), get("session_id")
    for raw in (currency, item_id, category, session_id):
        if raw is not None and not (
            type(raw) is str and len(raw) <= MAX_TEXT_LENGTH and raw.isascii()
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


def _event_from(doc: dict[str, object], limits: EventLimits) -> Event:
    event_type = text(doc, "type", required=True, integers=False)
    if event_type == ERASE:  # not an event: a request (never plain, so always here)
        return _erase_from(doc, limits)
    if event_type not in EVENT_TYPES:
        raise Invalid(UNKNOWN_TYPE, f"type {event_type!r} is not one of {', '.join(EVENT_TYPES)}")
    return Event(
        event_id=identifier(doc, "event_id"),
        user_id=identifier(doc, "user_id"),
        type=str(event_type),
        ts_ms=timestamp(doc, limits),
        amount=number(doc, "amount", MAX_AMOUNT),
        currency=text(doc, "currency", integers=False),
        item_id=text(doc, "item_id"),
        category=text(doc, "category"),
        session_id=text(doc, "session_id"),
        quantity=quantity(doc),
    )


def _erase_from(doc: dict[str, object], limits: EventLimits) -> EraseRequest:
    """An erasure request (``operators.erasure``): the event's ids and time, who and how."""
    via = text(doc, "via", required=True, integers=False)
    if via not in VIAS:
        raise Invalid(OUT_OF_RANGE, f"'via' of an erase must be one of {', '.join(VIAS)}")
    return EraseRequest(
        event_id=identifier(doc, "event_id"),
        user_id=identifier(doc, "user_id"),
        type=ERASE,
        ts_ms=timestamp(doc, limits),
        requested_by=str(text(doc, "requested_by", required=True, integers=False)),
        via=via,
    )
