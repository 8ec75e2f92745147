"""The published JSON Schema and the decoder accept and reject the same documents."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from operators.decoding import decode_event
from operators.events import Event

SCHEMA = json.loads(Path(__file__).parents[2].joinpath("stream/event.schema.json").read_text())
VALID = {"event_id": "e1", "user_id": "u1", "type": "view", "ts": 1767225600000}


@pytest.mark.parametrize(
    "doc",
    [
        VALID,
        {**VALID, "ts": "2026-01-01T10:00:00Z"},
        {**VALID, "ts": "2019-10-01 00:00:00 UTC"},
        {**VALID, "type": "purchase", "amount": 12.5, "currency": "EUR", "quantity": 2},
        {**VALID, "extra": {"anything": True}},
        {**VALID, "user_id": 12345},
    ],
)
def test_schema_and_decoder_accept(doc: dict[str, object]) -> None:
    jsonschema.validate(doc, SCHEMA)
    assert isinstance(decode_event(str(doc["user_id"]).encode(), json.dumps(doc).encode()), Event)


@pytest.mark.parametrize(
    "doc",
    [
        {k: v for k, v in VALID.items() if k != "user_id"},
        {**VALID, "type": "teleport"},
        {**VALID, "ts": 1767225600},
        {**VALID, "amount": -1},
        {**VALID, "quantity": 1.5},
        {**VALID, "event_id": ""},
        {**VALID, "user_id": ["u1"]},
    ],
)
def test_schema_and_decoder_reject(doc: dict[str, object]) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)
    assert not isinstance(decode_event(b"u1", json.dumps(doc).encode()), Event)
