"""Offline k-means building blocks the online model (``stream.models.segment_model``) uses: nearest
center, k-means++ seeding, the k-means cost, Lloyd iterations and the test of moving one center
onto a far point, on points as tuples."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

Point = tuple[float, ...]
Points = Sequence[Point] | npt.NDArray[np.float64]  # an array avoids converting again


def nearest(centers: Sequence[Point], p: Point) -> tuple[int, float]:
    """(index, distance) of the nearest center; ties go to the lower index."""
    best, best_distance = 0, math.inf
    for i, c in enumerate(centers):
        distance = math.dist(c, p)
        if distance < best_distance:
            best, best_distance = i, distance
    return best, best_distance


def kmeans_plus_plus(
    points: Points,
    k: int,
    rng: random.Random,
    existing: Sequence[Point] = (),
) -> list[Point]:
    """k-means++ seeding: each new center is a point drawn with probability ~ D(x)^2."""
    data = np.asarray(points, dtype=float)
    chosen: list[Point] = []
    if not existing:
        chosen.append(tuple(data[rng.randrange(len(points))].tolist()))
    anchors = [*existing, *chosen]
    gaps = _squared_distances(data, np.asarray(anchors, dtype=float)).min(axis=1)
    while len(chosen) < k:
        cumulative = np.cumsum(gaps)
        total = float(cumulative[-1])
        if total <= 0:
            pick = rng.randrange(len(points))
        else:
            pick = min(int(np.searchsorted(cumulative, rng.random() * total)), len(points) - 1)
        chosen.append(tuple(data[pick].tolist()))
        gaps = np.minimum(gaps, ((data - data[pick]) ** 2).sum(axis=1))
    return chosen


def kmeans_cost(points: Points, centers: Sequence[Point]) -> float:
    """Sum of squared distances from each point to its nearest center."""
    squared = _squared_distances(np.asarray(points, dtype=float), np.asarray(centers, dtype=float))
    return float(squared.min(axis=1).sum())


def lloyd(
    points: Points,
    centers: Sequence[Point],
    iterations: int,
) -> tuple[list[Point], list[int]]:
    """Lloyd's k-means iterations from ``centers``; an empty cluster keeps its center."""
    data = np.asarray(points, dtype=float)
    current = np.asarray(centers, dtype=float)
    sizes = np.zeros(len(current), dtype=int)
    for _ in range(iterations):
        labels = _squared_distances(data, current).argmin(axis=1)
        sizes = np.bincount(labels, minlength=len(current))
        sums = np.stack(
            [np.bincount(labels, weights=column, minlength=len(current)) for column in data.T],
            axis=1,
        )
        moved = np.where(sizes[:, None] > 0, sums / np.maximum(sizes, 1)[:, None], current)
        if np.array_equal(moved, current):
            break
        current = moved
    return [tuple(float(v) for v in c) for c in current], [int(n) for n in sizes]


def relocated(
    points: Points, centers: Sequence[Point], rng: random.Random
) -> tuple[list[Point], list[int]] | None:
    """The best variant of ``centers`` with one of them moved onto a far point (k-means++
    sampling), each refit by 3 Lloyd iterations, if it costs over 10% less than the centers
    refit alike; else None. (centers, sizes)."""
    current, _ = lloyd(points, centers, 3)
    best_cost = 0.9 * kmeans_cost(points, current)
    far = kmeans_plus_plus(points, 1, rng, existing=current)[0]
    best: tuple[list[Point], list[int]] | None = None
    for moved in range(len(current)):
        variant = [far if i == moved else c for i, c in enumerate(current)]
        variant, variant_sizes = lloyd(points, variant, 3)
        variant_cost = kmeans_cost(points, variant)
        if variant_cost < best_cost:
            best_cost, best = variant_cost, (variant, variant_sizes)
    return best


def _squared_distances(
    data: npt.NDArray[np.float64],
    centers: npt.NDArray[np.float64],
) -> npt.NDArray[np.float64]:
    """(points x centers) squared Euclidean distances."""
    return ((data[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)  # type: ignore[no-any-return]
