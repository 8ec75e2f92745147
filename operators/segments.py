"""Segment assignment with a frozen model snapshot.

The trainer (``stream/trainer.py``) learns with River and exports what it learned as plain data:
this module scores with that data and never trains, so every scorer agrees on one snapshot and
a snapshot survives River upgrades (River pickles do not).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from operators.features import NO_SEGMENT


@dataclass(frozen=True, slots=True)
class SegmentSnapshot:
    """A versioned, frozen segment model: feature transform, scaler statistics and centers.

    Inputs are transformed as ``z = (log1p(x) - mean) / std`` per feature, then assigned to the
    nearest center (Euclidean). ``centers[i]`` is segment ``i``.
    """

    version: int
    features: tuple[str, ...]
    means: tuple[float, ...]
    stds: tuple[float, ...]
    centers: tuple[tuple[float, ...], ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "version": self.version, "features": list(self.features), "means": list(self.means),
            "stds": list(self.stds), "centers": [list(c) for c in self.centers],
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
        return cls(
            version=version, features=tuple(str(f) for f in features),
            means=floats(doc["means"]), stds=floats(doc["stds"]),
            centers=tuple(floats(c) for c in centers),
        )


def standardize(snapshot: SegmentSnapshot, features: Mapping[str, float]) -> tuple[float, ...]:
    return tuple(
        (math.log1p(max(features[name], 0.0)) - mean) / std
        for name, mean, std in zip(snapshot.features, snapshot.means, snapshot.stds, strict=True)
    )


def assign_segment(snapshot: SegmentSnapshot | None, features: Mapping[str, float]) -> int:
    """The nearest center's segment id, or ``NO_SEGMENT`` before any model exists."""
    if snapshot is None or not snapshot.centers:
        return NO_SEGMENT
    z = standardize(snapshot, features)
    best, best_distance = NO_SEGMENT, math.inf
    for segment, center in enumerate(snapshot.centers):
        distance = math.dist(z, center)
        if distance < best_distance:
            best, best_distance = segment, distance
    return best
