"""Segment assignment with a frozen model snapshot.

The trainer (``stream/models/segment_trainer.py``) learns with River and exports what it
learned as plain data: this module scores with that data and never trains, so every scorer
agrees on one snapshot and a snapshot survives River upgrades (River pickles do not).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from operators.compiled import compiled
from operators.features import NO_SEGMENT


@dataclass(frozen=True, slots=True)
class SegmentSnapshot:
    """A versioned, frozen segment model: feature transform, scaler statistics and centers.

    Inputs are transformed as ``z = (log1p(x) - mean) / std`` per feature, then assigned to the
    nearest center (Euclidean). ``centers[i]`` is segment ``segment_ids[i]``; ids stay stable
    across snapshots (``operators.matching``). ``shares[i]`` is the trainer's estimate of the
    share of recent users nearest to center ``i``.
    """

    version: int
    features: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    centers: tuple[tuple[float, ...], ...]
    segment_ids: tuple[int, ...] = ()
    shares: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not self.segment_ids:
            object.__setattr__(self, "segment_ids", tuple(range(len(self.centers))))
        if not self.shares:
            object.__setattr__(self, "shares", (1 / max(len(self.centers), 1),) * len(self.centers))

    def to_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "features": list(self.features),
            "means": list(self.means),
            "stds": list(self.stds),
            "centers": [list(c) for c in self.centers],
            "segment_ids": list(self.segment_ids),
            "shares": list(self.shares),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, object]) -> SegmentSnapshot:
        def floats(value: object) -> tuple[float, ...]:
            assert isinstance(value, list)
            return tuple(float(v) for v in value)

        centers = doc["centers"]
        features = doc["features"]
        version = doc["version"]
        assert isinstance(centers, list) and isinstance(features, list)
        assert isinstance(version, int)
        ids = doc.get("segment_ids", [])
        assert isinstance(ids, list)
        return cls(
            version=version,
            features=tuple(str(f) for f in features),
            means=floats(doc["means"]),
            stds=floats(doc["stds"]),
            centers=tuple(floats(c) for c in centers),
            segment_ids=tuple(int(i) for i in ids),
            shares=floats(doc.get("shares", [])),
        )


def standardize(snapshot: SegmentSnapshot, features: Mapping[str, float]) -> tuple[float, ...]:
    return tuple(
        (math.log1p(max(features[name], 0.0)) - mean) / std
        for name, mean, std in zip(snapshot.features, snapshot.means, snapshot.stds, strict=True)
    )


def segment_distances(snapshot: SegmentSnapshot, features: Mapping[str, float]) -> dict[int, float]:
    """Distance from the user's standardized features to each segment's center, by segment id."""
    z = standardize(snapshot, features)
    return {
        segment: math.dist(z, center)
        for segment, center in zip(snapshot.segment_ids, snapshot.centers, strict=True)
    }


def segment_reason(
    snapshot: SegmentSnapshot,
    features: Mapping[str, float],
    before: int,
    after: int,
    top: int = 3,
) -> tuple[str, ...]:
    """The features that moved a user from segment ``before`` to ``after``, strongest first:
    those whose standardized value lies nearer the new center than the old one."""
    if before not in snapshot.segment_ids or after not in snapshot.segment_ids:
        return ()
    z = standardize(snapshot, features)
    old = snapshot.centers[snapshot.segment_ids.index(before)]
    new = snapshot.centers[snapshot.segment_ids.index(after)]
    gains = {
        f: (v - o) ** 2 - (v - n) ** 2
        for f, v, o, n in zip(snapshot.features, z, old, new, strict=True)
    }
    return tuple(sorted((f for f, g in gains.items() if g > 0), key=lambda f: -gains[f]))[:top]


def predict_many(
    snapshot: SegmentSnapshot | None, rows: Iterable[Mapping[str, float]]
) -> list[int]:
    """Each row's nearest center's segment id (ties to the lower id), or ``NO_SEGMENT`` before
    any model exists: the model's plain prediction, with no anti-flapping (the demo's and the
    evaluation's view of a population; the loop scores with ``operators.scores``)."""
    if snapshot is None or not snapshot.centers:
        return [NO_SEGMENT for _ in rows]
    nearest = []
    for features in rows:
        distances = segment_distances(snapshot, features)
        nearest.append(min(distances, key=lambda segment: (distances[segment], segment)))
    return nearest


def choose_segment(
    current: int,
    distances: Mapping[int, float],
    pending: int,
    streak: int,
    margin: float,
    switch_after: int,
) -> tuple[int, int, int]:
    """Anti-flapping: (segment, pending segment, streak) after one assignment.

    A user leaves ``current`` for the nearest segment only when it is closer by more than
    ``margin`` (standardized units), or when the same other segment has been nearest
    ``switch_after`` times in a row; a user without a segment (or whose segment was retired)
    takes the nearest at once.
    """
    best = min(distances, key=lambda segment: (distances[segment], segment))
    if current not in distances:
        return best, NO_SEGMENT, 0
    closer = distances[current] - distances[best]
    return switch_segment(current, best, closer, pending, streak, margin, switch_after)


@compiled
def switch_segment(
    current: int,
    nearest: int,
    closer: float,
    pending: int,
    streak: int,
    margin: float,
    switch_after: int,
) -> tuple[int, int, int]:
    """The anti-flapping rule itself, for a user in a segment the model has: (segment, pending
    segment, streak) when ``nearest`` is nearest, ``closer`` than ``current`` by that much.
    The one copy: the pipeline decides with it, and the evaluation measures it."""
    if nearest == current:
        return nearest, NO_SEGMENT, 0
    streak = streak + 1 if pending == nearest else 1
    if closer > margin or streak >= switch_after:
        return nearest, NO_SEGMENT, 0
    return current, nearest, streak


# Words for a center far above / below the average on a feature (standardized units).
_WORDS: dict[str, tuple[str, str]] = {
    "recency_days": ("lapsed", "recent"),
    "frequency": ("frequent", "one-off"),
    "monetary": ("high spend", "low spend"),
    "avg_order_value": ("large baskets", "small baskets"),
    "tenure_days": ("long-standing", "new"),
    "inactive_days": ("dormant", "active"),
    "cancellations": ("cancelling", "few cancels"),
    "events": ("very active", "light"),
    "categories": ("broad interests", "narrow interests"),
}
NAME_THRESHOLD = 0.5


@dataclass(frozen=True, slots=True)
class SegmentProfile:
    segment: int
    share: float
    centroid: dict[str, float]  # the center in the features' own units
    name: str


def segment_profiles(snapshot: SegmentSnapshot) -> list[SegmentProfile]:
    """Each segment's size share, center in original units and a generated readable name.

    The name lists, strongest first, the features whose center lies more than half a standard
    deviation (of log1p values) from the average, e.g. "recent, frequent, high spend".
    """
    profiles = []
    for segment, center, share in zip(
        snapshot.segment_ids, snapshot.centers, snapshot.shares, strict=True
    ):
        centroid = {
            name: math.expm1(z * std + mean)
            for name, z, mean, std in zip(
                snapshot.features, center, snapshot.means, snapshot.stds, strict=True
            )
        }
        ranked = sorted(zip(center, snapshot.features, strict=True), key=lambda p: -abs(p[0]))
        words = [_word(name, z) for z, name in ranked if abs(z) > NAME_THRESHOLD]
        profiles.append(SegmentProfile(segment, share, centroid, ", ".join(words) or "typical"))
    return profiles


def segment_names(snapshot: SegmentSnapshot | None, named: Mapping[int, str]) -> dict[int, str]:
    """Each segment's name: the one an analyst gave it, else the generated one."""
    profiles = segment_profiles(snapshot) if snapshot is not None else []
    return {p.segment: named.get(p.segment, p.name) for p in profiles}


def _word(feature: str, z: float) -> str:
    high, low = _WORDS.get(feature, (f"high {feature}", f"low {feature}"))
    if feature.endswith(("_7d", "_30d", "_90d")):
        measure, window = feature.rsplit("_", 1)
        high, low = f"many {measure} ({window})", f"few {measure} ({window})"
    return high if z > 0 else low
