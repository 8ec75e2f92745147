"""Simulated shoppers for the demo, the tests and the benchmark.

Each user follows one persona (how often they visit, how much they browse, cart and buy, and how
much they spend); events come out in event-time order in the input schema. Seeded: the same
arguments give the same events in every process.
"""

from __future__ import annotations

import heapq
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

DAY_MS = 86_400_000
DEFAULT_START_MS = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Persona:
    name: str
    share: float  # of all users
    sessions: float  # mean sessions over the simulated period
    active_until: float  # fraction of the period after which the user stops visiting
    views: float  # mean views per session
    cart_rate: float  # chance a session adds to cart
    buy_rate: float  # chance a cart ends in a purchase
    amount: tuple[float, float]  # purchase amount range


PERSONAS = (
    Persona("bargain hunter", 0.30, 10, 1.0, 4, 0.7, 0.8, (4, 25)),
    Persona("loyal big spender", 0.15, 8, 1.0, 2, 0.8, 0.95, (120, 450)),
    Persona("window shopper", 0.35, 9, 1.0, 6, 0.05, 0.1, (10, 40)),
    Persona("lapsing buyer", 0.20, 6, 0.35, 3, 0.5, 0.7, (30, 90)),
)


def persona_of(user_index: int, seed: int) -> Persona:
    pick = random.Random(f"{seed}:{user_index}").random()
    for persona in PERSONAS:
        pick -= persona.share
        if pick < 0:
            return persona
    return PERSONAS[-1]


def user_id(index: int) -> str:
    return f"user-{index:06d}"


def _user_events(
    index: int,
    seed: int,
    start_ms: int,
    days: float,
    sessions_scale: float,
) -> Iterator[dict[str, Any]]:
    rng = random.Random(f"{seed}:events:{index}")
    persona = persona_of(index, seed)
    uid = user_id(index)
    # Ids stay unique when a later run continues the same users from a later start.
    run = uid if start_ms == DEFAULT_START_MS else f"{uid}@{start_ms // 1000}"
    span_ms = days * DAY_MS * persona.active_until
    # A Poisson-ish number of sessions at uniform times in the user's active span.
    mean_sessions = persona.sessions * sessions_scale
    n_sessions = max(1, round(rng.gauss(mean_sessions, mean_sessions / 4)))
    session_starts = sorted(start_ms + int(rng.random() * span_ms) for _ in range(n_sessions))
    counter = 0
    for session_no, ts in enumerate(session_starts):
        session = f"{run}-s{session_no}"
        steps: list[tuple[str, float | None]] = [("view", None)] * max(
            1, round(rng.expovariate(1 / persona.views))
        )
        if rng.random() < persona.cart_rate:
            steps.append(("add_to_cart", None))
            if rng.random() < persona.buy_rate:
                steps.append(("purchase", round(rng.uniform(*persona.amount), 2)))
        for event_type, amount in steps:
            ts += rng.randint(5_000, 120_000)
            counter += 1
            event: dict[str, Any] = {
                "event_id": f"{run}-{counter}",
                "user_id": uid,
                "type": event_type,
                "ts": ts,
                "session_id": session,
                "item_id": f"item-{rng.randint(1, 500)}",
            }
            if amount is not None:
                event["amount"] = amount
                event["currency"] = "EUR"
            yield event


def generate_events(
    users: int,
    *,
    seed: int = 7,
    days: float = 60.0,
    start_ms: int = DEFAULT_START_MS,
    sessions_scale: float = 1.0,
) -> Iterator[dict[str, Any]]:
    """Every user's events, merged in event-time order (about 45 per user at scale 1)."""
    streams = [_user_events(i, seed, start_ms, days, sessions_scale) for i in range(users)]
    return heapq.merge(*streams, key=lambda e: int(e["ts"]))


MALFORMED = (
    b"this is not json",
    b"[1, 2, 3]",
    b'{"event_id": "x1", "type": "view", "ts": 1767225600000}',
    b'{"event_id": "x2", "user_id": "u", "type": "teleport", "ts": 1767225600000}',
    b'{"event_id": "x3", "user_id": "u", "type": "purchase", "ts": "yesterday"}',
    b'{"event_id": "x4", "user_id": "u", "type": "purchase", "ts": 1767225600000, "amount": -5}',
    b'{"event_id": "x5", "user_id": ["u"], "type": "view", "ts": 1767225600000}',
    b'{"event_id": "x6", "user_id": "u", "type": "view", "ts": 12}',
    b"\xff\xfe\x00garbage",
)


def encode(event: dict[str, Any]) -> tuple[bytes, bytes]:
    """(key, value) as a producer should publish the event: keyed by user id."""
    return str(event["user_id"]).encode(), json.dumps(event, separators=(",", ":")).encode()
