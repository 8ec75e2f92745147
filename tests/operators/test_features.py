from __future__ import annotations

import itertools
import math

import pytest

from operators.events import Event
from operators.features import (
    DAY_MS,
    STATE_SIZE_BYTES,
    UserState,
    is_duplicate,
    pack_state,
    segment_features,
    unpack_state,
    update_features,
)

H = 30 * DAY_MS
T0 = 1767225600000


def ev(n: int, kind: str, day: float, amount: float | None = None) -> Event:
    return Event(f"e{n}", "u1", kind, T0 + int(day * DAY_MS), amount)


def apply(events: list[Event]) -> UserState:
    state = None
    for event in events:
        state = update_features(state, event, H)
    assert state is not None
    return state


def test_counts_and_spend_are_exact() -> None:
    state = apply([ev(1, "view", 0), ev(2, "add_to_cart", 0.1), ev(3, "purchase", 0.2, 10.10),
                   ev(4, "purchase", 1, 0.20), ev(5, "cancel", 2), ev(6, "view", 3)])
    assert state.count("view") == 2 and state.count("purchase") == 2
    assert state.count("cancel") == 1 and state.events_total == 6
    assert state.spend_cents == 1030
    assert state.first_seen_ms == T0 and state.last_seen_ms == T0 + 3 * DAY_MS
    assert state.last_purchase_ms == T0 + DAY_MS


def test_decayed_values_follow_the_half_life_at_read_time() -> None:
    state = apply([ev(1, "purchase", 0, 100.0), ev(2, "purchase", 30, 50.0)])
    now = segment_features(state, T0 + 30 * DAY_MS, H)
    assert now["recent_purchases"] == pytest.approx(1.5)
    assert now["recent_spend"] == pytest.approx(100.0)
    # A user who goes quiet decays without sending anything: 60 days later, a quarter.
    later = segment_features(state, T0 + 90 * DAY_MS, H)
    assert later["recent_purchases"] == pytest.approx(0.375)
    assert later["days_since_purchase"] == pytest.approx(60.0)


def test_out_of_order_events_give_the_same_features_as_ordered_ones() -> None:
    events = [ev(1, "view", 0), ev(2, "purchase", 5, 30.0), ev(3, "view", 9), ev(4, "view", 2)]
    reference = segment_features(apply(sorted(events, key=lambda e: e.ts_ms)), T0 + 20 * DAY_MS, H)
    for order in itertools.permutations(events):
        got = segment_features(apply(list(order)), T0 + 20 * DAY_MS, H)
        for name, value in reference.items():
            assert math.isclose(got[name], value, rel_tol=1e-12), name


def test_never_purchased_users_have_capped_recency() -> None:
    state = apply([ev(1, "view", 0)])
    assert segment_features(state, T0, H)["days_since_purchase"] == 365.0


def test_recent_event_ids_detect_redeliveries() -> None:
    state = apply([ev(n, "view", n) for n in range(1, 6)])
    assert is_duplicate(state, ev(5, "view", 5))
    assert is_duplicate(state, ev(2, "view", 2))
    assert not is_duplicate(state, ev(1, "view", 1))  # only the last four are remembered
    assert not is_duplicate(None, ev(1, "view", 1))


def test_packed_state_round_trips_and_is_small() -> None:
    state = apply([ev(1, "view", 0), ev(2, "purchase", 1, 12.34)])
    packed = pack_state(state)
    assert len(packed) == STATE_SIZE_BYTES <= 200
    assert unpack_state(packed) == state


def test_unpacking_an_unknown_format_version_fails_loudly() -> None:
    packed = bytearray(pack_state(apply([ev(1, "view", 0)])))
    packed[0] = 99
    with pytest.raises(ValueError, match="format version"):
        unpack_state(bytes(packed))
