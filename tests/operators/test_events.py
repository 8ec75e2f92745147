from __future__ import annotations

import json

import pytest

from operators.decoding import decode_event
from operators.events import Event, EventLimits, Rejected

BASE = {
    "event_id": "e1",
    "user_id": "u1",
    "type": "purchase",
    "ts": 1767225600000,
    "amount": 19.99,
    "currency": "EUR",
    "item_id": "i9",
    "quantity": 2,
}


def decode(doc: object, key: bytes | None = b"u1") -> Event | Rejected:
    return decode_event(key, json.dumps(doc).encode())


def test_decodes_a_valid_event_with_epoch_ms() -> None:
    event = decode(BASE)
    assert event == Event("e1", "u1", "purchase", 1767225600000, 19.99, "EUR", "i9", None, None, 2)


@pytest.mark.parametrize(
    ("ts", "expected_ms"),
    [
        ("2026-01-01T00:00:00Z", 1767225600000),
        ("2026-01-01T01:00:00+01:00", 1767225600000),
        ("2026-01-01 00:00:00.123", 1767225600123),
        ("2019-10-01 00:00:00 UTC", 1569888000000),
    ],
)
def test_accepts_iso8601_times_exactly(ts: str, expected_ms: int) -> None:
    event = decode({**BASE, "ts": ts})
    assert isinstance(event, Event) and event.ts_ms == expected_ms


def test_accepts_integer_ids_as_text() -> None:
    event = decode({**BASE, "user_id": 541312140}, key=b"541312140")
    assert isinstance(event, Event) and event.user_id == "541312140"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"not json", "not_json"),
        (b"\xff\xfe", "not_json"),
        (b"[1]", "not_object"),
        (b"[" * 100_000 + b"]" * 100_000, "oversized"),
    ],
)
def test_rejects_undecodable_bytes(value: bytes, reason: str) -> None:
    rejected = decode_event(b"u1", value)
    assert isinstance(rejected, Rejected) and rejected.reason == reason


@pytest.mark.parametrize(
    ("change", "reason", "mentions"),
    [
        ({"user_id": None}, "missing_field", "user_id"),
        ({"ts": None}, "missing_field", "ts"),
        ({"type": "teleport"}, "unknown_type", "teleport"),
        ({"user_id": ["u1"]}, "wrong_type", "user_id"),
        ({"amount": "12"}, "wrong_type", "amount"),
        ({"amount": -1}, "out_of_range", "amount"),
        ({"amount": 1e12}, "out_of_range", "amount"),
        ({"quantity": 1.5}, "wrong_type", "quantity"),
        ({"ts": "yesterday"}, "bad_timestamp", "ISO 8601"),
        ({"ts": 1767225600}, "bad_timestamp", "epoch ms"),  # seconds sent as milliseconds
        ({"ts": True}, "wrong_type", "ts"),
        ({"event_id": ""}, "out_of_range", "event_id"),
        ({"category": "x" * 300}, "out_of_range", "category"),
    ],
)
def test_rejects_invalid_fields_with_a_reason_and_a_clear_detail(
    change: dict[str, object], reason: str, mentions: str
) -> None:
    doc = {k: v for k, v in {**BASE, **change}.items() if v is not None}
    rejected = decode(doc)
    assert isinstance(rejected, Rejected)
    assert rejected.reason == reason
    assert mentions in rejected.detail


@pytest.mark.parametrize("key", [None, b"someone-else"])
def test_rejects_a_key_that_is_not_the_user_id(key: bytes | None) -> None:
    rejected = decode(BASE, key=key)
    assert isinstance(rejected, Rejected) and rejected.reason == "key_mismatch"


def test_rejects_messages_over_the_size_limit() -> None:
    rejected = decode_event(
        b"u1", json.dumps({**BASE, "pad": "x" * 100}).encode(), EventLimits(max_bytes=100)
    )
    assert isinstance(rejected, Rejected) and rejected.reason == "oversized"


FIELDS = b'"event_id":"e1","user_id":"u1","ts":1767225600000'


@pytest.mark.parametrize(
    "body",
    [
        b'{"type":"view",' + FIELDS + b',"type":"click"}',
        b'{"type":"view",' + FIELDS + b',"type" :"click"}',  # a colon count alone would miss it
        b'{"type":"view",' + FIELDS + b',"item_id":"a:b","type":"click"}',
        b'{"type":"view",' + FIELDS + b',"extra":{"k":1,"k":2}}',
        b'{"type":"view",' + FIELDS + b',"extra":[{"k":1},{"k":1,"k" :2}]}',
    ],
)
def test_refuses_a_key_written_twice(body: bytes) -> None:
    """Which value a parser keeps is an accident of the parser: the message is refused."""
    decoded = decode_event(b"u1", body)
    assert isinstance(decoded, Rejected) and decoded.reason == "not_json"
    assert "duplicate key" in decoded.detail


@pytest.mark.parametrize(
    "extra",
    [b'"item_id":"a:b"', b'"item_id":"{[x]}"', b'"extra":{"a":[1,{"b":2}]}', b'"item_id" : "x"'],
)
def test_accepts_colons_braces_and_spacing_that_only_look_like_keys(extra: bytes) -> None:
    decoded = decode_event(b"u1", b'{"type":"view",' + FIELDS + b"," + extra + b"}")
    assert isinstance(decoded, Event), decoded
