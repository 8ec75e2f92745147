"""Test events and the state an uninterrupted run must reach, computed with the operators."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from operators.decoding import decode_event
from operators.events import Event, Rejected
from operators.features import UserState, event_digest, update_features
from stream.feeds.simulator import encode


def expected_states(events: Iterable[dict[str, Any]]) -> dict[str, UserState]:
    """Each user's features after applying every valid event once, in production order."""
    states: dict[str, UserState] = {}
    for raw in events:
        decoded = decode_event(*encode(raw))
        if isinstance(decoded, Rejected):
            continue
        assert isinstance(decoded, Event)
        before = states.get(decoded.user_id)
        if before is None or event_digest(decoded.event_id) not in before.recent_event_ids:
            states[decoded.user_id] = update_features(before, decoded)
    return states


def features_only(state: UserState) -> tuple[object, ...]:
    """The fields events determine exactly (segment and seq depend on the model's timing)."""
    return (
        state.first_seen_ms,
        state.last_seen_ms,
        state.last_purchase_ms,
        state.counts,
        state.spend_cents,
        state.windows,
        state.recent_event_ids,
        state.category_bits,
    )
