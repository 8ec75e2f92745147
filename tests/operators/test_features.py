from __future__ import annotations

import itertools
import math
import re
import struct
from dataclasses import replace

import pytest

from operators import features as features_module
from operators.events import EVENT_TYPES, Event
from operators.features import (
    DAY_MS,
    FEATURES,
    UserState,
    event_digest,
    features_at,
    update_features,
)
from operators.record import STATE_SIZE_BYTES, pack_state, unpack_state

T0 = 1767225600000


def remembered(state: UserState | None, event: Event) -> bool:
    """The record remembers the event's id: the pipeline drops it as a redelivery."""
    return state is not None and event_digest(event.event_id) in state.recent_event_ids


def ev(n: int, kind: str, day: float, amount: float | None = None) -> Event:
    return Event(f"e{n}", "u1", kind, T0 + int(day * DAY_MS), amount)


def apply(events: list[Event]) -> UserState:
    state = None
    for event in events:
        state = update_features(state, event)
    assert state is not None
    return state


def test_counts_and_spend_are_exact() -> None:
    state = apply(
        [
            ev(1, "view", 0),
            ev(2, "add_to_cart", 0.1),
            ev(3, "purchase", 0.2, 10.10),
            ev(4, "purchase", 1, 0.20),
            ev(5, "cancel", 2),
            ev(6, "view", 3),
        ]
    )
    assert state.count("view") == 2 and state.count("purchase") == 2
    assert state.count("cancel") == 1 and state.events_total == 6
    assert state.spend_cents == 1030
    assert state.first_seen_ms == T0 and state.last_seen_ms == T0 + 3 * DAY_MS
    assert state.last_purchase_ms == T0 + DAY_MS


def test_windows_fade_with_their_time_constant_at_read_time() -> None:
    state = apply([ev(1, "purchase", 0, 100.0), ev(2, "purchase", 30, 50.0)])
    now = features_at(state, T0 + 30 * DAY_MS)
    assert now["purchases_30d"] == pytest.approx(1 + math.exp(-1), rel=1e-6)
    assert now["spend_30d"] == pytest.approx(50 + 100 * math.exp(-1), rel=1e-6)
    assert now["purchases_7d"] == pytest.approx(1 + math.exp(-30 / 7), rel=1e-6)
    # A user who goes quiet fades without sending anything: 90 days later, by e^-1 on 90d.
    later = features_at(state, T0 + 120 * DAY_MS)
    assert later["purchases_90d"] == pytest.approx(now["purchases_90d"] * math.exp(-1), rel=1e-6)
    assert later["recency_days"] == 90.0 and later["inactive_days"] == 90.0
    assert later["tenure_days"] == 120.0


def test_lifetime_features_are_exact() -> None:
    state = apply(
        [
            ev(1, "view", 0),
            ev(2, "purchase", 0.5, 19.99),
            ev(3, "purchase", 2, 0.01),
            ev(4, "cancel", 3),
            ev(5, "add_to_cart", 4),
        ]
    )
    f = features_at(state, T0 + 10 * DAY_MS)
    assert f["frequency"] == 2 and f["monetary"] == 20.0 and f["avg_order_value"] == 10.0
    assert f["cancellations"] == 1 and f["events"] == 5
    assert f["recency_days"] == 8.0 and f["tenure_days"] == 10.0 and f["inactive_days"] == 6.0
    assert f["views_30d"] == pytest.approx(math.exp(-10 / 30), rel=1e-6)
    assert f["carts_7d"] == pytest.approx(math.exp(-6 / 7), rel=1e-6)


def test_every_documented_feature_is_computed() -> None:
    features = features_at(apply([ev(1, "view", 0)]), T0)
    assert tuple(features) == FEATURES
    for name in FEATURES:
        documented = re.sub(r"_\d+d$", "_<w>d", name)  # windows are documented once
        assert f"``{documented}``" in (features_module.__doc__ or ""), name


def test_out_of_order_events_give_the_same_features_as_ordered_ones() -> None:
    events = [
        ev(1, "view", 0),
        ev(2, "purchase", 5, 30.0),
        ev(3, "view", 9),
        ev(4, "view", 2),
        ev(5, "add_to_cart", 1),
    ]
    reference = features_at(apply(sorted(events, key=lambda e: e.ts_ms)), T0 + 20 * DAY_MS)
    for order in itertools.permutations(events):
        got = features_at(apply(list(order)), T0 + 20 * DAY_MS)
        for name, value in reference.items():
            assert math.isclose(got[name], value, rel_tol=1e-6), name


def test_users_without_purchases_read_recency_as_tenure() -> None:
    state = apply([ev(1, "view", 0), ev(2, "view", 3)])
    f = features_at(state, T0 + 5 * DAY_MS)
    assert f["recency_days"] == 5.0 and f["frequency"] == 0 and f["avg_order_value"] == 0


def test_categories_count_distinct_values_approximately() -> None:
    events = [Event(f"e{n}", "u1", "view", T0 + n, category=f"cat-{n % 6}") for n in range(60)]
    estimate = features_at(apply(events), T0 + 100)["categories"]
    assert 4.5 <= estimate <= 8.0  # 6 distinct, linear counting on 32 bits
    assert features_at(apply([ev(1, "view", 0)]), T0)["categories"] == 0


def test_recent_event_ids_detect_redeliveries_among_the_last_four() -> None:
    state = apply([ev(n, "view", n) for n in range(1, 7)])
    for n in (6, 5, 4, 3):
        assert remembered(state, ev(n, "view", n))
    assert not remembered(state, ev(2, "view", 2))  # only the last four are remembered
    assert not remembered(None, ev(1, "view", 1))


def test_a_non_adjacent_repeat_counts_once() -> None:
    a, b, c = ev(1, "purchase", 0, 5.0), ev(2, "view", 0.1), ev(3, "view", 0.2)
    state = apply([a, b, c])
    assert remembered(state, a)  # a, b, c, a: the second a is a redelivery


def test_packed_state_round_trips_and_fits_the_redis_budget() -> None:
    state = apply(
        [
            ev(1, "view", 0),
            ev(2, "purchase", 1, 12.34),
            Event("e3", "u1", "view", T0 + 5, category="toys"),
        ]
    )
    packed = pack_state(state)
    # 187 bytes; values up to 188 bytes share one allocator class (192 bytes), within which
    # MEMORY USAGE stays at 280 bytes per user for short keys (tests/stream/test_redis_memory.py).
    assert len(packed) == STATE_SIZE_BYTES <= 188
    assert unpack_state(packed) == state


def test_a_version_3_record_reads_with_unknown_tag_entry_times_and_is_written_as_4() -> None:
    state = replace(apply([ev(1, "view", 0)]), tags=0b101, seq=7, tags_entered_s=(0,) * 8)
    v3 = b"\x03" + pack_state(state)[1:-32]  # version 3: the same record without the times
    assert len(v3) == 155
    assert unpack_state(v3) == state
    assert pack_state(unpack_state(v3))[:1] == b"\x04"
    entered = replace(state, tags_entered_s=(1_767_225_600, 0, 2**32 + 5, 0, 0, 0, 0, 0))
    assert unpack_state(pack_state(entered)).tags_entered_s[:3] == (1_767_225_600, 0, 2**32 - 1)


@pytest.mark.parametrize("segment", [127, 128, 255, 40_000, 2**31 - 1])
def test_segment_ids_past_a_byte_pack_exactly(segment: int) -> None:
    state = replace(apply([ev(1, "view", 0)]), segment=segment, pending_segment=segment - 1)
    again = unpack_state(pack_state(state))
    assert (again.segment, again.pending_segment) == (segment, segment - 1)


def test_counters_saturate_at_their_limits_instead_of_failing() -> None:
    state = replace(
        apply([ev(1, "view", 0)]),
        counts=(2**40,) * len(EVENT_TYPES),
        spend_cents=2**70,
        seq=2**33,
        pending_streak=1000,
        segment=2**40,
    )
    again = unpack_state(pack_state(state))
    assert again.counts == (2**32 - 1,) * len(EVENT_TYPES)
    assert (again.spend_cents, again.seq, again.pending_streak) == (2**63 - 1, 2**32 - 1, 255)
    assert again.segment == -1  # no such segment can exist: unassigned, re-scored next time


def test_version_2_records_are_still_read() -> None:
    state = apply([ev(1, "view", 0), ev(2, "purchase", 1, 12.34)])
    ids = [d | 0xABCD << 48 for d in state.recent_event_ids[:2]]  # v2 kept 64-bit digests
    # Version 2's layout, as 0.1 wrote it.
    v2 = struct.Struct(f"<B q q q q {len(EVENT_TYPES)}I q 12f 2Q I b b B B I").pack(
        2,
        state.first_seen_ms,
        state.last_seen_ms,
        state.last_purchase_ms,
        state.next_due_ms,
        *state.counts,
        state.spend_cents,
        *state.windows,
        *ids,
        state.category_bits,
        3,
        -1,
        0,
        1,
        7,
    )
    again = unpack_state(v2)
    assert again == replace(state, segment=3, tags=1, seq=7)
    assert remembered(again, ev(2, "purchase", 1, 12.34))


def test_unpacking_an_unknown_format_version_fails_loudly() -> None:
    packed = bytearray(pack_state(apply([ev(1, "view", 0)])))
    packed[0] = 99
    with pytest.raises(ValueError, match="format version"):
        unpack_state(bytes(packed))
