from __future__ import annotations

import math

import pytest

from operators.features import NO_SEGMENT
from operators.segments import (
    SegmentSnapshot,
    choose_segment,
    segment_profiles,
    segment_reason,
)


def test_a_user_without_a_segment_takes_the_nearest_at_once() -> None:
    assert choose_segment(NO_SEGMENT, {4: 2.0, 7: 1.0}, NO_SEGMENT, 0, 0.5, 3) == (7, NO_SEGMENT, 0)


def test_emits_change_only_past_the_margin() -> None:
    # Slightly nearer to 7 than to the current 4: stay, and remember 7 as pending.
    assert choose_segment(4, {4: 1.2, 7: 1.0}, NO_SEGMENT, 0, 0.5, 3) == (4, 7, 1)
    # Clearly nearer: move at once.
    assert choose_segment(4, {4: 1.6, 7: 1.0}, NO_SEGMENT, 0, 0.5, 3) == (7, NO_SEGMENT, 0)


def test_switches_after_n_consecutive_assignments_to_the_same_segment() -> None:
    state = (4, NO_SEGMENT, 0)
    for expected in [(4, 7, 1), (4, 7, 2), (7, NO_SEGMENT, 0)]:
        state = choose_segment(state[0], {4: 1.2, 7: 1.0}, state[1], state[2], 0.5, 3)
        assert state == expected


def test_a_different_contender_restarts_the_streak() -> None:
    assert choose_segment(4, {4: 1.2, 7: 1.1, 9: 1.0}, 7, 2, 0.5, 3) == (4, 9, 1)


def test_back_at_the_current_segment_clears_the_streak() -> None:
    assert choose_segment(4, {4: 1.0, 7: 1.1}, 7, 2, 0.5, 3) == (4, NO_SEGMENT, 0)


def test_a_retired_current_segment_moves_at_once() -> None:
    assert choose_segment(2, {4: 1.2, 7: 1.0}, NO_SEGMENT, 0, 0.5, 3) == (7, NO_SEGMENT, 0)


def test_profiles_give_centroids_in_original_units_and_readable_names() -> None:
    snapshot = SegmentSnapshot(
        version=1,
        features=("recency_days", "frequency", "monetary"),
        means=(math.log1p(30), math.log1p(2), math.log1p(200)),
        stds=(1.0, 0.5, 1.0),
        centers=((-1.0, 1.0, 1.2), (1.5, -0.2, 0.1)),
        segment_ids=(3, 5),
        shares=(0.4, 0.6),
    )
    first, second = segment_profiles(snapshot)
    assert first.segment == 3 and first.share == 0.4
    assert first.centroid["recency_days"] == pytest.approx(math.expm1(math.log1p(30) - 1.0))
    assert first.name == "high spend, recent, frequent"
    assert second.name == "lapsed"


def test_the_reason_names_the_features_that_moved_the_user() -> None:
    # Standardized log features; segment 5 is "frequent", segment 9 "recent and frequent".
    snapshot = SegmentSnapshot(
        version=1,
        features=("recency_days", "frequency", "monetary"),
        means=(0.0, 0.0, 0.0),
        stds=(1.0, 1.0, 1.0),
        centers=((2.0, 1.0, 0.0), (0.0, 1.0, 0.0)),
        segment_ids=(5, 9),
    )
    # Recency fell (log1p(0.2) ~ 0.18), frequency and monetary sit as close to both centers.
    user = {"recency_days": 0.2, "frequency": math.e - 1, "monetary": 0.0}
    assert segment_reason(snapshot, user, 5, 9) == ("recency_days",)
    assert segment_reason(snapshot, user, NO_SEGMENT, 9) == ()  # a first assignment
