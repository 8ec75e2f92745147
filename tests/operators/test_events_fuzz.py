"""Property tests of the decoder: it never raises, whatever the bytes, and it agrees with the
published JSON Schema on one corpus of near-valid and broken documents (Hypothesis)."""

from __future__ import annotations

import json
import string
from dataclasses import astuple
from pathlib import Path

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from operators.decoding import _event_from, _plain, decode_event
from operators.events import BAD_TIMESTAMP, EVENT_TYPES, Event, EventLimits, Rejected

SCHEMA = json.loads(Path(__file__).parents[2].joinpath("stream/event.schema.json").read_text())
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
# Generous: the corpus is about shapes, and a message's size is checked before anything else.
LIMITS = EventLimits(max_bytes=10_000_000)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=20,
)
ids = (
    st.text(max_size=140)
    | st.integers(-(2**65), 2**65)
    | st.sampled_from(["u1", "", "0"])
    | json_values
)
timestamps = (
    st.integers(0, 5 * 10**12)
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.from_regex(
        r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}"
        r"([T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?)?"
        r"( UTC|Z|[+-][0-9]{2}:?[0-9]{2})?\Z"
    )
    | st.datetimes().map(lambda d: d.isoformat())
    | st.text(string.printable, max_size=30)
    | json_values
)
numbers = st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | json_values
VALID = {
    "event_id": "e1",
    "user_id": "u1",
    "type": "purchase",
    "ts": 1_767_225_600_000,
    "amount": 12.5,
    "quantity": 2,
    "currency": "EUR",
    "item_id": 7,
    "category": "shoes",
    "session_id": "s1",
}
FUZZED = {
    "event_id": ids,
    "user_id": ids,
    "type": st.sampled_from([*EVENT_TYPES, "teleport", ""]) | json_values,
    "ts": timestamps,
    "amount": numbers,
    "quantity": numbers,
    "currency": st.text(max_size=300) | json_values,
    "item_id": ids,
    "category": ids,
    "session_id": ids,
    "extra": json_values,
}
# A valid event with a few fields changed or dropped: most documents are near the boundary.
documents = st.builds(
    lambda changed, dropped: {k: v for k, v in {**VALID, **changed}.items() if k not in dropped},
    st.dictionaries(st.sampled_from(sorted(FUZZED)), st.none(), max_size=3).flatmap(
        lambda keys: st.fixed_dictionaries({k: FUZZED[k] for k in keys})
    ),
    st.sets(st.sampled_from(sorted(VALID)), max_size=1) | st.just(set()),
)


def key_for(doc: dict[str, object]) -> bytes:
    try:
        return str(doc.get("user_id")).encode()
    except UnicodeEncodeError:
        return b"?"


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.none() | st.binary(max_size=20))
def test_never_raises_on_arbitrary_bytes(value: bytes, key: bytes | None) -> None:
    assert isinstance(decode_event(key, value, received_ms=1_767_225_600_000), Event | Rejected)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_agrees_with_the_json_schema(doc: dict[str, object]) -> None:
    try:
        json.dumps(doc, allow_nan=False)
        standard = True
    except ValueError:  # an infinity: Python writes the non-JSON Infinity, which is refused
        standard = False
    decoded = decode_event(key_for(doc), json.dumps(doc).encode(), LIMITS)
    schema_ok = standard and VALIDATOR.is_valid(doc)
    if isinstance(decoded, Event):
        assert schema_ok, f"the decoder accepted what the schema refuses: {doc!r}"
        return
    if schema_ok:
        # Only what a schema cannot say: a date the calendar lacks, a lone surrogate, the key.
        assert (
            (decoded.reason == BAD_TIMESTAMP and isinstance(doc["ts"], str))
            or "surrogate" in decoded.detail
            or decoded.reason == "key_mismatch"
            or "nested deeper" in decoded.detail
        ), (decoded, doc)


@settings(max_examples=500)
@given(st.integers(2, 200).flatmap(lambda n: st.just("[" * n + "]" * n)))
def test_nesting_is_bounded(nested: str) -> None:
    value = '{"event_id":"e","user_id":"u","type":"view","ts":1767225600000,"x":' + nested + "}"
    decoded = decode_event(b"u", value.encode())
    depth = nested.count("[") + 1
    assert isinstance(decoded, Event) == (depth <= 16)


@settings(max_examples=3000, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_the_quick_pass_decodes_as_the_careful_one(doc: dict[str, object]) -> None:
    """The common event takes a one-step path; whenever it answers, the careful field-by-field
    checks give the same event (and it leaves everything they would refuse to them)."""
    try:
        value = json.dumps(doc, separators=(",", ":")).encode()
    except ValueError:
        return
    user = doc.get("user_id")
    quick = _plain(user.encode() if isinstance(user, str) else None, value, LIMITS, None)
    if quick is None:
        return
    assert _event_from(doc, LIMITS) == quick
    assert all(
        type(v) is type(w)
        for v, w in zip(astuple(quick), astuple(_event_from(doc, LIMITS)), strict=True)
    )
