from __future__ import annotations

from dataclasses import replace

from operators.changes import encode_change
from operators.events import Event
from operators.features import update_features
from operators.pipeline import PipelineConfig, process_events
from operators.segments import SegmentSnapshot, assign_segment

T0 = 1767225600000
RFM = ("recency_days", "frequency", "monetary")
CONFIG = PipelineConfig(segment_features=RFM, train_sample_permille=1000)
# Two segments: segment 0 near "never bought", segment 1 near "bought just now, spent a lot".
SNAPSHOT = SegmentSnapshot(
    version=3, features=RFM, means=(0.0,) * 3, stds=(1.0,) * 3,
    centers=((0.0, 0.0, 0.0), (0.0, 0.7, 4.6)),
)


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
    assert half.training_vectors == again.training_vectors
    none = process_events({}, events, None, replace(CONFIG, train_sample_permille=0))
    assert none.training_vectors == []


def test_assign_segment_picks_the_nearest_standardized_center() -> None:
    far = {"recency_days": 0.0, "frequency": 0.0, "monetary": 0.0}
    near = {"recency_days": 0.0, "frequency": 1.0, "monetary": 100.0}
    assert assign_segment(SNAPSHOT, far) == 0
    assert assign_segment(SNAPSHOT, near) == 1
    assert assign_segment(None, near) == -1


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
