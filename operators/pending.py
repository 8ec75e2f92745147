"""Pending labels of predictive tags, and their stored form (a Redis hash field per user).

The stored form starts with a summary (the earliest label time of each tag, and the latest
label time), so a scoring can tell from a few bytes that none of a user's labels can move yet
and leave the rest undecoded.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from operators.tags import PURCHASE_WITHIN, TagDefinition


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~1.5 us (see Event)
class PendingLabel:
    """A user as they were at ``at_ms``, waiting for tag number ``tag``'s horizon to pass.

    ``logs`` are ``log1p`` of the tag's features (in its order), as stored: half precision.
    ``value`` is set as soon as the outcome is known, often before the horizon ends (a purchase
    settles ``churn_risk`` at once); the label is learned only when the horizon has passed.
    """

    tag: int
    at_ms: int  # a whole minute
    logs: tuple[float, ...]
    value: int | None = None


def resolve(
    tag: TagDefinition,
    pending: PendingLabel,
    purchase_ms: int | None,
    now_ms: int,
    horizon_ms: int | None = None,
) -> int | None:
    """The label if known: at a purchase at ``purchase_ms`` (None: no purchase now), or because
    ``now_ms`` is past the horizon; None while it is still open. ``horizon_ms``: the tag's, if
    the caller has it at hand."""
    if pending.value is not None:
        return pending.value
    deadline = pending.at_ms + (tag.horizon_ms if horizon_ms is None else horizon_ms)
    bought = purchase_ms is not None and pending.at_ms < purchase_ms <= deadline
    if bought:
        return 1 if tag.label == PURCHASE_WITHIN else 0
    if now_ms > deadline:
        return 0 if tag.label == PURCHASE_WITHIN else 1
    return None


def half(value: float) -> float:
    """``value`` rounded to half precision, as a pending label stores it."""
    return float(_HALF.unpack(_HALF.pack(value))[0])


_HALF: Final = struct.Struct("<e")
_LABEL_HEAD: Final = struct.Struct("<BBIB")  # tag, state (0 open, 1 + value), minute, count
_MINUTE_MS: Final = 60_000


# The summary: this marker (a label starts with its tag, below 8), the number of tags n, the
# first label minute of tags 0..n-1 (_NONE: no label), the last label minute.
_SUMMARY: Final = 0x80
_NONE: Final = 0xFFFFFFFF
_MARKER: Final = bytes([_SUMMARY])


def pack_pending(labels: Sequence[PendingLabel]) -> bytes:
    """Pending labels as stored: a summary (6 + 4 bytes a tag), then 7 + 2 bytes a feature
    per label."""
    if not labels:
        return b""
    firsts = [_NONE] * (max(label.tag for label in labels) + 1)
    for label in labels:
        firsts[label.tag] = min(firsts[label.tag], label.at_ms // _MINUTE_MS)
    last = max(label.at_ms for label in labels) // _MINUTE_MS
    out = bytearray(struct.pack(f"<BB{len(firsts)}II", _SUMMARY, len(firsts), *firsts, last))
    for label in labels:
        minute, rest = divmod(label.at_ms, _MINUTE_MS)
        if rest:
            raise ValueError("a label's time must be a whole minute")
        state = 0 if label.value is None else 1 + label.value
        out += _LABEL_HEAD.pack(label.tag, state, minute, len(label.logs))
        out += struct.pack(f"<{len(label.logs)}e", *label.logs)
    return bytes(out)


def unpack_pending(data: bytes) -> list[PendingLabel]:
    labels = []
    at = 6 + 4 * data[1] if data[:1] == _MARKER else 0
    while at < len(data):
        tag, state, minute, n = _LABEL_HEAD.unpack_from(data, at)
        at += _LABEL_HEAD.size
        logs = struct.unpack_from(f"<{n}e", data, at)
        at += 2 * n
        labels.append(
            PendingLabel(tag, minute * _MINUTE_MS, tuple(logs), None if state == 0 else state - 1)
        )
    return labels
