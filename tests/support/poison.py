"""Malformed messages of many classes, for the decoder fuzz through Kafka (the chaos suite)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator

VALID = {"event_id": "e", "user_id": "u", "type": "view", "ts": 1_767_225_600_000}
Message = tuple[bytes | None, bytes | None]  # (key, value); a None value is a tombstone


def _doc(**changes: object) -> bytes:
    return json.dumps({**VALID, **changes}).encode()


def _without(field: str) -> bytes:
    return json.dumps({k: v for k, v in VALID.items() if k != field}).encode()


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


CLASSES: dict[str, Callable[[random.Random], Message]] = {
    "random_bytes": lambda r: (b"u", r.randbytes(r.randint(1, 200))),
    "invalid_utf8": lambda r: (b"u", b'{"user_id":"\xff\xfe' + r.randbytes(8) + b'"}'),
    "utf16_json": lambda r: (b"u", json.dumps(VALID).encode("utf-16")),
    "encoded_surrogate": lambda r: (b"u", _raw('{"user_id":"u\ud800"}')),
    "escaped_surrogate": lambda r: (b"u\\ud800", _doc(user_id="u\ud800")),
    "surrogate_category": lambda r: (b"u", _doc(category="\udfff", event_id=f"s{r.random()}")),
    "huge_integer": lambda r: (
        b"u",
        _raw(
            '{"event_id":"e","user_id":"u","type":"view","ts":' + "9" * r.randint(4301, 6000) + "}"
        ),
    ),
    "huge_amount": lambda r: (b"u", _raw(json.dumps(VALID)[:-1] + ',"amount":1' + "0" * 400 + "}")),
    "float_out_of_range": lambda r: (b"u", _raw(json.dumps(VALID)[:-1] + ',"amount":1e400}')),
    "nan": lambda r: (b"u", _raw(json.dumps(VALID)[:-1] + ',"amount":NaN}')),
    "deep_nesting": lambda r: (
        b"u",
        _raw('{"x":' + "[" * r.randint(20, 20_000) + "]" * 20_000 + "}"),
    ),
    "wrong_type": lambda r: (
        b"u",
        _doc(
            **{
                r.choice(["user_id", "ts", "type", "amount"]): r.choice(
                    [[1], {"a": 1}, True, "12x"]
                )
            }
        ),
    ),
    "missing_field": lambda r: (b"u", _without(r.choice(list(VALID)))),
    "key_mismatch": lambda r: (r.choice([None, b"someone-else"]), _doc()),
    "duplicate_keys": lambda r: (
        b"u",
        _raw('{"event_id":"e","user_id":"u","user_id":"v","type":"view","ts":1767225600000}'),
    ),
    "integer_currency": lambda r: (b"u", _doc(currency=978)),
    "iso_week_date": lambda r: (b"u", _doc(ts="2026-W01-1")),
    "seconds_timestamp": lambda r: (b"u", _doc(ts=1_767_225_600)),
    "future_timestamp": lambda r: (b"u", _doc(ts=4_000_000_000_000)),
    "tombstone": lambda r: (b"u", None),
    "empty": lambda r: (b"u", b""),
    "oversized": lambda r: (b"u", _doc(pad="x" * 70_000)),
    "about_1mb": lambda r: (b"u", _doc(pad="x" * r.randint(786_000, 1_000_000))),
}


def poison(count: int, seed: int = 0, large_every: int = 500) -> Iterator[tuple[str, Message]]:
    """``count`` (class, message) pairs, cycling through the classes; ~1 MB ones are rarer."""
    rng = random.Random(seed)
    small = [name for name in CLASSES if name != "about_1mb"]
    for n in range(count):
        name = "about_1mb" if n % large_every == large_every - 1 else small[n % len(small)]
        yield name, CLASSES[name](rng)
