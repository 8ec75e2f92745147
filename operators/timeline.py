"""What steps 2 and 3 of a batch find (``operators.steps.advance``): the moments to score,
each a (record version, time) pair, and the events set aside (late, failed)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from operators.events import Event

# Kinds of moment; from EXPIRE on, the moment removes the user (idle too long, or erased).
EVENT, RESCORE, REASSIGN, EXPIRE, ERASE = 0, 1, 2, 3, 4

__all__ = ["ERASE", "EVENT", "EXPIRE", "REASSIGN", "RESCORE", "Moments", "Timeline"]


@dataclass(slots=True)
class Moments:
    """Scoring moments in the order they happened, as parallel columns."""

    row: list[int] = field(default_factory=list)  # the user's row in the table
    at_ms: list[int] = field(default_factory=list)
    version: list[int] = field(default_factory=list)  # the record version scored
    kind: list[int] = field(default_factory=list)  # EVENT, RESCORE or REASSIGN
    event: list[int] = field(default_factory=list)  # index of the event in the batch, or -1
    train: list[bool] = field(default_factory=list)  # offers a training vector if sampled
    before: list[int] = field(default_factory=list)  # version before the event; -1: new user
    purchase_ms: list[int] = field(default_factory=list)  # the event's time if a purchase


@dataclass(slots=True)
class Timeline:
    """What steps 2 and 3 found: moments to score, and the events set aside."""

    moments: Moments = field(default_factory=Moments)
    late: list[tuple[Event, int]] = field(default_factory=list)
    failed: list[tuple[Event, str]] = field(default_factory=list)
    processed_by_type: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    watermark_ms: int = 0
    dues: dict[str, int] = field(default_factory=dict)
