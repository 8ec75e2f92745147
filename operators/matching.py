"""Stable segment ids: match a new snapshot's centers to the previous snapshot's segments.

Segment ids are a product concept (dashboards, downstream rules and analysts' names refer to
them), while a retrained model numbers its centers arbitrarily. Each new center takes the id
of the previous segment it is matched to by a minimum-total-distance assignment (Hungarian
algorithm), provided the pair is closer than ``cap``; any other new center gets a fresh id
(created), and a previous segment left unmatched is retired, or merged into the new segment
whose center lies within ``cap`` of it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

Vector = Sequence[float]


@dataclass(frozen=True, slots=True)
class Lineage:
    """What happened to segment ids between two snapshots."""

    ids: tuple[int, ...]  # id of each new center, in the new snapshot's order
    kept: tuple[int, ...] = ()
    created: tuple[int, ...] = ()
    retired: tuple[int, ...] = ()
    merged: tuple[tuple[int, int], ...] = ()  # (old id, id it merged into)


def min_cost_assignment(cost: Sequence[Sequence[float]]) -> list[int]:
    """For each row, the column it is assigned to (rows <= columns), minimising the total cost.

    The O(n^2 m) shortest-augmenting-path form of the Hungarian algorithm with row and column
    potentials.
    """
    rows = len(cost)
    cols = len(cost[0]) if rows else 0
    if rows > cols:
        raise ValueError("min_cost_assignment needs at least as many columns as rows")
    u = [0.0] * (rows + 1)  # row potentials (1-based; 0 is a virtual row)
    v = [0.0] * (cols + 1)  # column potentials
    row_of = [0] * (cols + 1)  # row_of[j]: the row assigned to column j (0: none)
    for row in range(1, rows + 1):
        row_of[0] = row
        slack = [math.inf] * (cols + 1)
        came_from = [0] * (cols + 1)
        used = [False] * (cols + 1)
        col = 0
        while row_of[col] != 0:
            used[col] = True
            current, delta, next_col = row_of[col], math.inf, 0
            for j in range(1, cols + 1):
                if used[j]:
                    continue
                reduced = cost[current - 1][j - 1] - u[current] - v[j]
                if reduced < slack[j]:
                    slack[j], came_from[j] = reduced, col
                if slack[j] < delta:
                    delta, next_col = slack[j], j
            for j in range(cols + 1):
                if used[j]:
                    u[row_of[j]] += delta
                    v[j] -= delta
                else:
                    slack[j] -= delta
            col = next_col
        while col:  # flip the augmenting path
            previous = came_from[col]
            row_of[col] = row_of[previous]
            col = previous
    assignment = [0] * rows
    for j in range(1, cols + 1):
        if row_of[j]:
            assignment[row_of[j] - 1] = j - 1
    return assignment


def match_segments(
    previous_ids: Sequence[int],
    previous: Sequence[Vector],
    new: Sequence[Vector],
    cap: float,
) -> Lineage:
    """Give ``new`` centers the ids of the ``previous`` ones they replace (see module doc)."""
    if not previous:
        return Lineage(ids=tuple(range(len(new))), created=tuple(range(len(new))))
    distance = [[math.dist(n, p) for p in previous] for n in new]
    # Pad to a square matrix: a dummy pairing costs `cap`, so a real pair is preferred only when
    # it is closer than the cap.
    size = max(len(new), len(previous))
    padded = [
        [distance[i][j] if i < len(new) and j < len(previous) else cap for j in range(size)]
        for i in range(size)
    ]
    pairs = min_cost_assignment(padded)
    ids: list[int | None] = [None] * len(new)
    kept: list[int] = []
    for i in range(len(new)):
        j = pairs[i]
        if j < len(previous) and distance[i][j] < cap:
            ids[i] = previous_ids[j]
            kept.append(previous_ids[j])
    next_id = max(previous_ids, default=-1) + 1
    created = []
    for i, segment in enumerate(ids):
        if segment is None:
            ids[i] = next_id
            created.append(next_id)
            next_id += 1
    final = tuple(s for s in ids if s is not None)
    retired, merged = [], []
    for j, old in enumerate(previous_ids):
        if old in kept:
            continue
        nearest = min(range(len(new)), key=lambda i: distance[i][j]) if new else None
        if nearest is not None and distance[nearest][j] < cap:
            merged.append((old, final[nearest]))
        else:
            retired.append(old)
    return Lineage(
        ids=final,
        kept=tuple(kept),
        created=tuple(created),
        retired=tuple(retired),
        merged=tuple(merged),
    )


def lineage_records(
    known: Mapping[int, Mapping[str, object]], lineage: Lineage, version: int
) -> dict[int, dict[str, object]]:
    """What model ``version`` changes in the segments' histories (``known``, by id): a new
    segment's creation, a merge on both sides, a retirement. Each history is
    ``{"created_version", "merged_from", "merged_into", "retired_version"}``."""

    def history(segment: int) -> dict[str, object]:
        empty = {"created_version": version, "merged_from": [], "merged_into": None}
        return dict(known.get(segment) or {**empty, "retired_version": None})

    out: dict[int, dict[str, object]] = {}
    for segment in (*lineage.created, *(s for s in lineage.ids if s not in known)):
        out[segment] = history(segment)
    for old, into in lineage.merged:
        gone = out.setdefault(old, history(old))
        gone["merged_into"], gone["retired_version"] = into, version
        kept = out.setdefault(into, history(into))
        merged_from = kept["merged_from"]
        assert isinstance(merged_from, list)
        kept["merged_from"] = [*merged_from, old]
    for segment in lineage.retired:
        out.setdefault(segment, history(segment))["retired_version"] = version
    return out
