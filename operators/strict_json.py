"""Strict JSON for event messages: orjson's speed, the standard library's exactness.

orjson parses the common case about ten times faster than the standard library, but it keeps
the last of a repeated key and refuses some inputs without saying exactly why. ``parse`` takes
orjson's result only when it settles the question, and otherwise parses again strictly: valid
UTF-8, no duplicate key, no NaN or Infinity, integers of bounded length, bounded nesting.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from typing import Final

import orjson

MAX_DEPTH: Final = 16  # nesting of objects and arrays, counting the event itself
MAX_INTEGER_DIGITS: Final = 30  # longer integers read as infinite: out of every range
MAX_SHOWN: Final = 128  # at most this much of a key in an error


class NotJson(ValueError):
    """The bytes are not JSON segstream accepts; the message says why."""


def parse(value: bytes) -> object:
    """The JSON document in ``value``, checked as the module docstring says."""
    doc = _fast_parse(value)
    if doc is None:  # not the plain case: the strict parser says exactly what is wrong
        doc = _strict_parse(value)
    if isinstance(doc, dict) and not _flat(value) and _nested(doc):
        _check_depth(doc)
    return doc


def _flat(value: bytes) -> bool:
    """No object or array inside the outer object: the bytes hold no second brace or bracket
    (one inside a string only sends the document the longer way)."""
    return value.count(b"{") == 1 and b"[" not in value


def _nested(doc: dict[str, object]) -> bool:
    return any(type(v) is dict or type(v) is list for v in doc.values())


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
    keys = len(doc) if _flat(value) or not _nested(doc) else _count_keys(doc)
    # Every key written needs a colon of its own outside strings, so as many colons as keys
    # parsed means no key was written twice; more (a colon in a string) needs a closer count.
    if value.count(b":") == keys:
        return doc
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
        raise NotJson(f"not valid UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        return json.loads(
            text, object_pairs_hook=_object, parse_int=_integer, parse_constant=_no_constant
        )
    except json.JSONDecodeError as exc:
        raise NotJson(f"not valid JSON: {exc}") from None
    except RecursionError:
        raise NotJson("JSON nested too deeply") from None


def _object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    doc = dict(pairs)
    if len(doc) != len(pairs):  # which value would win is a parser's accident: refuse
        twice = next(k for k, n in Counter(k for k, _ in pairs).items() if n > 1)
        raise NotJson(f"duplicate key {twice[:MAX_SHOWN]!r}")
    return doc


def _integer(text: str) -> int | float:
    # Python refuses to read integers over 4,300 digits (ValueError); none is meaningful here.
    if len(text) > MAX_INTEGER_DIGITS:
        return -math.inf if text.startswith("-") else math.inf
    return int(text)


def _no_constant(name: str) -> float:
    raise NotJson(f"{name} is not JSON")


def _check_depth(doc: dict[str, object]) -> None:
    """Objects and arrays nest at most ``MAX_DEPTH`` deep, counted level by level."""
    level: list[object] = [doc]
    depth = 1
    while level:
        if depth > MAX_DEPTH:
            raise NotJson(f"JSON nested deeper than {MAX_DEPTH} levels")
        below: list[object] = []
        for node in level:
            children = node.values() if isinstance(node, dict) else node
            below += [c for c in children if isinstance(c, dict | list)]  # type: ignore[attr-defined]
        level = below
        depth += 1
