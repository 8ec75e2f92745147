"""Judging the streaming segments against an offline scikit-learn k-means++ baseline."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from operators.segments import SegmentSnapshot, predict_many, segment_distances

Matrix = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class PartitionScore:
    cost_ratio: float  # k-means cost of the stream partition / offline k-means++ cost
    ari: float  # adjusted Rand index between the two partitions


def standardized_log(rows: Sequence[Mapping[str, float]], features: Sequence[str]) -> Matrix:
    """The users' features as z-scores of log1p values (the space both models cluster in)."""
    x = np.log1p(np.maximum(np.array([[r[f] for f in features] for r in rows], dtype=float), 0))
    std = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(std > 0, std, 1.0)  # type: ignore[no-any-return]


def partition_cost(z: Matrix, labels: Sequence[int]) -> float:
    """Within-cluster sum of squares of a partition, each cluster about its own mean."""
    array = np.asarray(labels)
    return float(
        sum(((z[array == c] - z[array == c].mean(axis=0)) ** 2).sum() for c in np.unique(array))
    )


def score_against_offline(z: Matrix, labels: Sequence[int], k: int, seed: int) -> PartitionScore:
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    offline = KMeans(n_clusters=k, init="k-means++", n_init=10, random_state=seed).fit(z)
    return PartitionScore(
        cost_ratio=partition_cost(z, labels) / float(offline.inertia_),
        ari=float(adjusted_rand_score(offline.labels_, labels)),
    )


def relabel_shares(
    snapshots: Sequence[SegmentSnapshot],
    population: Sequence[Mapping[str, float]],
    margin: float,
    switch_after: int,
) -> tuple[list[float], list[float]]:
    """Share of a fixed population whose segment changes between consecutive snapshots.

    The users' features never change, so every relabel is the model's doing. Returned twice:
    by raw nearest center, and as served (with the anti-flapping margin / streak rule).
    """
    from operators.segments import choose_segment

    raw: list[float] = []
    served: list[float] = []
    previous = predict_many(snapshots[0], population)
    kept = list(previous)
    state = [(s, -1, 0) for s in previous]
    for snapshot in snapshots[1:]:
        current = predict_many(snapshot, population)
        raw.append(sum(a != b for a, b in zip(previous, current, strict=True)) / len(current))
        moved = 0
        for i, features in enumerate(population):
            segment, pending, streak = choose_segment(
                state[i][0],
                segment_distances(snapshot, features),
                state[i][1],
                state[i][2],
                margin,
                switch_after,
            )
            moved += segment != kept[i]
            kept[i], state[i] = segment, (segment, pending, streak)
        served.append(moved / len(population))
        previous = current
    return raw, served


def stationary_population(
    n: int,
    seed: int,
    features: Sequence[str] = ("recency_days", "frequency", "monetary"),
) -> list[dict[str, float]]:
    """Users from a fixed mixture of four groups (log-normal around group centers); RFM-like
    centers for the RFM features, seeded random ones for any other feature."""
    rfm = {
        "recency_days": (3.0, 20.0, 120.0, 300.0),
        "frequency": (6.0, 2.0, 1.0, 3.0),
        "monetary": (1500.0, 150.0, 40.0, 400.0),
    }
    shape = random.Random(f"groups:{','.join(features)}")
    columns = [
        rfm.get(f) or tuple(math.exp(shape.uniform(0, 6)) for _ in range(4)) for f in features
    ]
    groups = list(zip(*columns, strict=True))
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        center = rng.choice(groups)
        out.append(
            {
                name: math.exp(math.log(c) + rng.gauss(0, 0.35))
                for name, c in zip(features, center, strict=True)
            }
        )
    return out
