from __future__ import annotations

from dataclasses import replace

import pytest

from operators.changes import encode_change
from operators.events import Event
from operators.features import update_features
from operators.pipeline import PipelineConfig, advance_watermark, process_events
from operators.segments import SegmentSnapshot, predict_many
from tests.support.pipeline import CONFIG, RFM, SNAPSHOT, T0


def view(n: int, user: str = "u1") -> Event:
    return Event(f"v{n}", user, "view", T0 + n * 1000)


def buy(n: int, user: str = "u1") -> Event:
    return Event(f"b{n}", user, "purchase", T0 + n * 1000, 100.0)


def test_first_assignment_and_each_move_emit_one_change() -> None:
    out = process_events({}, [view(1), view(2), buy(3), view(4)], SNAPSHOT, CONFIG)
    moves = [(c.segment_before, c.segment_after, c.seq) for c in out.changes]
    assert moves == [(None, 0, 1), (0, 1, 2)]
    state = out.states["u1"]
    assert state.segment == 1 and state.seq == 2 and state.events_total == 4


def test_no_change_is_emitted_before_a_model_exists() -> None:
    out = process_events({}, [view(1), buy(2)], None, CONFIG)
    assert out.changes == [] and out.states["u1"].events_total == 2


def test_change_ids_are_deterministic_and_distinct() -> None:
    first = process_events({}, [view(1), buy(2), view(1, "u2")], SNAPSHOT, CONFIG)
    again = process_events({}, [view(1), buy(2), view(1, "u2")], SNAPSHOT, CONFIG)
    ids = [c.change_id for c in first.changes]
    assert ids == [c.change_id for c in again.changes]
    assert len(set(ids)) == len(ids) == 3


def test_continues_from_stored_state_and_leaves_inputs_untouched() -> None:
    stored = {"u1": replace(update_features(None, buy(1)), segment=1, seq=4)}
    snapshot_of_input = dict(stored)
    out = process_events(stored, [buy(2)], SNAPSHOT, CONFIG)
    assert out.changes == []  # still segment 1
    assert out.states["u1"].count("purchase") == 2 and out.states["u1"].seq == 4
    assert stored == snapshot_of_input


def test_duplicates_within_and_across_batches_count_once() -> None:
    out = process_events({}, [view(1), view(1), buy(2)], SNAPSHOT, CONFIG)
    assert out.duplicates == 1 and out.states["u1"].events_total == 2
    out2 = process_events(out.states, [buy(2), view(3)], SNAPSHOT, CONFIG)
    assert out2.duplicates == 1 and out2.states["u1"].events_total == 3
    assert out2.processed_by_type == {"view": 1}


def test_training_sample_is_a_stable_fraction_of_events() -> None:
    events = [view(n, f"u{n}") for n in range(2000)]
    half = process_events({}, events, None, replace(CONFIG, train_sample_permille=500))
    assert 850 < len(half.training_vectors) < 1150
    again = process_events({}, events, None, replace(CONFIG, train_sample_permille=500))
    assert half.training_vectors.tolist() == again.training_vectors.tolist()
    none = process_events({}, events, None, replace(CONFIG, train_sample_permille=0))
    assert len(none.training_vectors) == 0


def test_predict_many_picks_the_nearest_standardized_center() -> None:
    far = {"recency_days": 0.0, "frequency": 0.0, "monetary": 0.0}
    near = {"recency_days": 0.0, "frequency": 1.0, "monetary": 100.0}
    assert predict_many(SNAPSHOT, [far, near]) == [0, 1]
    assert predict_many(None, [near, far]) == [-1, -1]


def test_snapshot_round_trips_as_data() -> None:
    assert SegmentSnapshot.from_dict(SNAPSHOT.to_dict()) == SNAPSHOT


def test_change_events_encode_the_documented_fields() -> None:
    import json

    change = process_events({}, [buy(1)], SNAPSHOT, CONFIG).changes[0]
    doc = json.loads(encode_change(change, emitted_at_ms=T0 + 5))
    assert doc["user_id"] == "u1" and doc["segment_before"] is None
    assert doc["segment_after"] == 1 and doc["model_version"] == 3 and doc["seq"] == 1
    assert doc["event_time_ms"] == T0 + 1000 and doc["emitted_at_ms"] == T0 + 5
    assert doc["features"] == {"recency_days": 0.0, "frequency": 1.0, "monetary": 100.0}


# -- time: watermark, re-scoring of quiet users, late events ----------------------------------

DAY = 86_400_000
TIMED = replace(CONFIG, late_grace_ms=0, rescore_interval_ms=DAY, max_idle_ms=30 * DAY)
# Segment 0: recent buyers; segment 1: lapsed buyers (same purchases, 60 days ago).
RECENCY = SegmentSnapshot(
    version=1,
    features=RFM,
    means=(0.0,) * 3,
    stds=(1.0,) * 3,
    centers=((0.0, 0.7, 4.6), (4.1, 0.7, 4.6)),
)


def run_batches(
    batches: list[list[Event]], snapshot: SegmentSnapshot = RECENCY, config: PipelineConfig = TIMED
) -> tuple[dict[str, object], list[object], int]:
    """Drive process_events as the loop does: a state store with a due index and a watermark."""
    states: dict[str, object] = {}
    dues: dict[str, int] = {}
    changes: list[object] = []
    watermark = 0
    for events in batches:
        until = advance_watermark(watermark, events, config.late_grace_ms)
        due = sorted(u for u, at in dues.items() if at <= until)
        out = process_events(states, events, snapshot, config, watermark, due)  # type: ignore[arg-type]
        for user in out.removed:  # as the store does: removals first, then the batch's writes
            states.pop(user, None)
            dues.pop(user, None)
        states.update(out.states)
        for user, at in out.dues.items():
            if at:
                dues[user] = at
            else:
                dues.pop(user, None)
        changes.extend(out.changes)
        watermark = out.watermark_ms
    return states, changes, watermark


def test_a_quiet_user_leaves_the_segment_when_re_scored_without_an_event() -> None:
    buy_now = Event("b1", "quiet", "purchase", T0, 100.0)
    clock = [Event(f"c{d}", "other", "view", T0 + d * DAY) for d in range(1, 80)]
    _, changes, _ = run_batches([[buy_now], *[[e] for e in clock]])
    moves = [(c.user_id, c.segment_before, c.segment_after, c.event_id) for c in changes]
    quiet = [m for m in moves if m[0] == "quiet"]
    assert quiet[0][1:3] == (None, 0)
    assert quiet[1][1:3] == (0, 1) and quiet[1][3].startswith("rescore:")
    # Moved at a due time (a whole number of days after the purchase), not at a batch time.
    assert (int(quiet[1][3].split(":")[1]) - T0) % DAY == 0


def test_results_do_not_depend_on_batch_boundaries() -> None:
    events = [
        Event(
            f"e{n}",
            f"u{n % 7}",
            "purchase" if n % 3 == 0 else "view",
            T0 + n * DAY // 3,
            10.0 * (n % 5 + 1) if n % 3 == 0 else None,
        )
        for n in range(300)
        if n < 60 or n % 7 < 5
    ]  # u5 and u6 go quiet
    one = run_batches([events])
    many = run_batches([events[i : i + 17] for i in range(0, len(events), 17)])
    singles = run_batches([[e] for e in events])
    assert one[0] == many[0] == singles[0]

    def per_user(changes: list[object]) -> list[tuple[str, int, str]]:
        return sorted((c.user_id, c.seq, c.change_id) for c in changes)  # type: ignore[attr-defined]

    assert per_user(one[1]) == per_user(many[1]) == per_user(singles[1])
    assert len(one[1]) > 7  # first assignments and moves between recent and lapsed
    # u5 and u6 expired after 30 idle days, at the same event time whatever the batches.
    expired = {(c.user_id, c.event_time_ms) for c in one[1] if c.removed}  # type: ignore[attr-defined]
    assert {user for user, _ in expired} == {"u5", "u6"}
    assert "u5" not in one[0] and "u6" not in one[0]


def test_late_events_are_set_aside_unapplied() -> None:
    config = replace(TIMED, late_grace_ms=DAY)
    fresh = Event("n1", "u1", "view", T0 + 10 * DAY)
    late = Event("o1", "u1", "purchase", T0 + 5 * DAY, 50.0)
    within_grace = Event("o2", "u1", "view", T0 + 9 * DAY + 1)
    out = process_events({}, [fresh, late, within_grace], None, config)
    assert out.late == [(late, T0 + 9 * DAY)]
    assert out.watermark_ms == T0 + 9 * DAY
    assert out.states["u1"].count("view") == 2 and out.states["u1"].count("purchase") == 0


def test_a_user_idle_past_the_limit_expires_in_event_time_with_a_change_event() -> None:
    buy_now = Event("b1", "quiet", "purchase", T0, 100.0)
    clock = [Event(f"c{d}", "other", "view", T0 + d * DAY) for d in range(1, 60)]
    states, changes, _ = run_batches([[buy_now], clock])
    assert "quiet" not in states  # record, due entry and labels gone
    mine = [c for c in changes if c.user_id == "quiet"]  # type: ignore[attr-defined]
    last = mine[-1]
    assert last.removed == "expired" and last.event_id == f"expired:{T0 + 30 * DAY}"
    assert last.event_time_ms == T0 + 30 * DAY  # last seen + SEGSTREAM_MAX_IDLE_DAYS, exactly
    assert last.segment_before == mine[-2].segment_after is not None
    assert (last.segment_after, last.tags_after, last.seq) == (None, (), mine[-2].seq + 1)
    assert all(c.event_time_ms < T0 + 30 * DAY for c in mine[:-1])


@pytest.mark.parametrize("split", [False, True])
def test_an_event_after_the_expiry_starts_a_new_user(split: bool) -> None:
    first = [Event("b1", "back", "purchase", T0, 100.0)]
    clock = [Event(f"c{d}", "other", "view", T0 + d * DAY) for d in range(1, 45)]
    back = [Event("v1", "back", "view", T0 + 45 * DAY)]
    batches = [first, clock, back] if split else [first + clock + back]
    states, changes, _ = run_batches(batches)
    state = states["back"]
    assert (state.first_seen_ms, state.events_total) == (T0 + 45 * DAY, 1)  # type: ignore[attr-defined]
    mine = [(c.removed, c.seq, c.event_time_ms) for c in changes if c.user_id == "back"]  # type: ignore[attr-defined]
    expiry = [i for i, (removed, _, _) in enumerate(mine) if removed]
    assert len(expiry) == 1 and mine[expiry[0]][2] == T0 + 30 * DAY
    assert mine[expiry[0] + 1][1:] == (1, T0 + 45 * DAY)  # placed again, from seq 1
