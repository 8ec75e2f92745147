from __future__ import annotations

import itertools
import random

import pytest

from operators.matching import Lineage, lineage_records, match_segments, min_cost_assignment


@pytest.mark.parametrize("seed", range(30))
def test_assignment_is_as_cheap_as_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    rows, cols = rng.randint(1, 6), 6
    cost = [
        [rng.choice([rng.random(), float(rng.randint(0, 3))]) for _ in range(cols)]
        for _ in range(rows)
    ]
    got = min_cost_assignment(cost)
    assert len(set(got)) == rows
    best = min(
        sum(cost[r][c] for r, c in enumerate(p)) for p in itertools.permutations(range(cols), rows)
    )
    assert sum(cost[r][c] for r, c in enumerate(got)) == pytest.approx(best)


def test_more_rows_than_columns_is_refused() -> None:
    with pytest.raises(ValueError):
        min_cost_assignment([[1.0], [2.0]])


def test_shuffled_centers_keep_their_ids() -> None:
    previous = [(0.0, 0.0), (5.0, 0.0), (0.0, 5.0)]
    new = [(0.1, 5.1), (0.2, -0.1), (4.8, 0.1)]  # same centers, moved a little, reordered
    lineage = match_segments([7, 8, 9], previous, new, cap=1.0)
    assert lineage.ids == (9, 7, 8)
    assert set(lineage.kept) == {7, 8, 9} and not lineage.created and not lineage.retired


def test_a_far_center_is_a_new_segment_and_the_lost_one_is_retired() -> None:
    previous = [(0.0, 0.0), (5.0, 0.0)]
    new = [(0.0, 0.1), (-9.0, -9.0)]
    lineage = match_segments([0, 1], previous, new, cap=1.0)
    assert lineage.ids == (0, 2)
    assert lineage.created == (2,) and lineage.retired == (1,) and lineage.merged == ()


def test_two_segments_that_collapse_into_one_are_a_merge() -> None:
    previous = [(0.0, 0.0), (0.6, 0.0), (9.0, 9.0)]
    new = [(0.3, 0.0), (9.0, 9.1)]
    lineage = match_segments([3, 4, 5], previous, new, cap=1.0)
    assert lineage.ids[1] == 5 and lineage.ids[0] in (3, 4)
    survivor = lineage.ids[0]
    gone = ({3, 4} - {survivor}).pop()
    assert lineage.merged == ((gone, survivor),) and lineage.retired == ()


def test_the_first_snapshot_creates_ids_in_order() -> None:
    lineage = match_segments([], [], [(0.0,), (1.0,)], cap=1.0)
    assert lineage.ids == (0, 1) and lineage.created == (0, 1)


def test_lineage_records_follow_creations_merges_and_retirements() -> None:
    first = lineage_records({}, Lineage(ids=(0, 1, 2), created=(0, 1, 2)), 1)
    assert first[1] == {
        "created_version": 1,
        "merged_from": [],
        "merged_into": None,
        "retired_version": None,
    }
    later = Lineage(ids=(0, 2, 3), kept=(0, 2), created=(3,), merged=((1, 2),))
    changed = lineage_records(first, later, 5)
    assert set(changed) == {1, 2, 3}  # only what version 5 changed
    assert (changed[1]["merged_into"], changed[1]["retired_version"]) == (2, 5)
    assert changed[2]["merged_from"] == [1] and changed[2]["created_version"] == 1
    assert changed[3]["created_version"] == 5
    gone = lineage_records({**first, **changed}, Lineage(ids=(0, 3), retired=(2,)), 6)
    assert gone == {2: {**changed[2], "retired_version": 6}}
