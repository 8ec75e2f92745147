"""Erasure requests: decoded strictly, applied in order with the user's events."""

from __future__ import annotations

import json

import pytest

from operators.changes import encode_change
from operators.decoding import decode_event
from operators.erasure import EraseRequest, encode_erase_request
from operators.events import Event, Rejected
from operators.pipeline import process_events
from tests.support.pipeline import CONFIG, SNAPSHOT, T0


def erase(user: str, at_ms: int = T0, erase_id: str = "erase-1") -> EraseRequest:
    key, value = encode_erase_request(user, "dpo@example.com", "cli", at_ms, erase_id)
    decoded = decode_event(key, value)
    assert isinstance(decoded, EraseRequest), decoded
    return decoded


def buy(n: int, user: str = "u1") -> Event:
    return Event(f"b{n}", user, "purchase", T0 + n * 1000, 50.0)


def test_a_request_decodes_with_who_and_how() -> None:
    request = erase("u-42", T0 + 5)
    assert (request.user_id, request.event_id, request.ts_ms) == ("u-42", "erase-1", T0 + 5)
    assert (request.requested_by, request.via, request.type) == ("dpo@example.com", "cli", "erase")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"requested_by": None}, "missing_field"),
        ({"via": "email"}, "out_of_range"),
        ({"user_id": ""}, "out_of_range"),
        ({"ts": "yesterday"}, "bad_timestamp"),
    ],
)
def test_a_bad_request_is_rejected_with_its_reason(change: dict[str, object], reason: str) -> None:
    key, value = encode_erase_request("u-42", "dpo", "api", T0, "erase-1")
    document = {**json.loads(value), **change}
    kept = {k: v for k, v in document.items() if v is not None}
    decoded = decode_event(key, json.dumps(kept).encode())
    assert isinstance(decoded, Rejected) and decoded.reason == reason, decoded


def test_a_request_keyed_by_another_user_is_rejected() -> None:
    _, value = encode_erase_request("u-42", "dpo", "api", T0, "erase-1")
    decoded = decode_event(b"u-7", value)
    assert isinstance(decoded, Rejected) and decoded.reason == "key_mismatch"


def test_erasure_applies_between_the_events_before_and_after_it() -> None:
    stored = process_events({}, [buy(1), buy(2, "u2")], SNAPSHOT, CONFIG)
    assert stored.states["u1"].segment == 1
    out = process_events(
        stored.states, [buy(3), erase("u1", T0 + 10**9), buy(4)], SNAPSHOT, CONFIG, 0, ()
    )
    removal = [c for c in out.changes if c.removed]
    assert len(removal) == 1 and out.removed == ["u1"]
    gone = removal[0]
    assert (gone.event_id, gone.segment_before, gone.segment_after) == ("erase-1", 1, None)
    assert gone.seq == stored.states["u1"].seq + 1
    assert dict(gone.request) == {
        "requested_by": "dpo@example.com",
        "via": "cli",
        "requested_at_ms": T0 + 10**9,
        "found": True,
    }
    # The event after the request starts a new user: one purchase, first seen then.
    back = out.states["u1"]
    assert (back.first_seen_ms, back.count("purchase"), back.seq) == (T0 + 4000, 1, 1)
    # The request moved no watermark (its time is the wall clock's) and was not late.
    assert out.watermark_ms == T0 + 4000 - CONFIG.late_grace_ms
    document = json.loads(encode_change(gone, 0))
    assert document["kind"] == "user_erased" and document["requested_by"] == "dpo@example.com"
    assert "features" not in document and document["tags_before"] == []


def test_erasing_an_unknown_user_is_harmless_and_still_said() -> None:
    out = process_events({}, [erase("nobody")], SNAPSHOT, CONFIG, T0 + 10**10)
    (gone,) = out.changes
    assert gone.removed == "erased" and dict(gone.request)["found"] is False
    assert out.removed == ["nobody"] and out.states == {} and out.late == []


def test_a_user_erased_twice_stays_erased() -> None:
    stored = process_events({}, [buy(1)], SNAPSHOT, CONFIG)
    out = process_events(
        stored.states, [erase("u1"), erase("u1", erase_id="erase-2")], SNAPSHOT, CONFIG
    )
    assert out.removed == ["u1", "u1"] and "u1" not in out.states
    assert [dict(c.request)["found"] for c in out.changes] == [True, False]
