"""The segment trainer: the one writer of the segment model.

It learns with River (``StandardScaler`` on log1p features, then ``cluster.STREAMKMeans``) from
a sample of user feature vectors, and every ``snapshot_every`` samples exports what it learned as
a frozen :class:`SegmentSnapshot` (plain numbers) that scorers use. Scorers never train, so all
of them agree on one model version.
"""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Mapping, Sequence

from river import cluster, preprocessing

from operators.segments import SegmentSnapshot

log = logging.getLogger(__name__)


class SegmentTrainer:
    def __init__(
        self, features: Sequence[str], n_segments: int, *, snapshot_every: int = 2000,
        seed: int = 42, chunk_size: int = 50,
    ) -> None:
        self.features = tuple(features)
        self.n_segments = n_segments
        self.snapshot_every = snapshot_every
        self.version = 0
        self.samples = 0
        self.samples_at_snapshot = 0
        self._scaler = preprocessing.StandardScaler()
        self._kmeans = cluster.STREAMKMeans(
            chunk_size=chunk_size, n_clusters=n_segments, halflife=0.5, sigma=1.0, seed=seed
        )

    def learn(self, features: Mapping[str, float]) -> None:
        x = {name: math.log1p(max(features[name], 0.0)) for name in self.features}
        self._scaler.learn_one(x)
        self._kmeans.learn_one(self._scaler.transform_one(x))
        self.samples += 1

    def due(self) -> bool:
        """True once enough samples arrived since the last snapshot (and k-means has centers)."""
        return (
            self.samples - self.samples_at_snapshot >= self.snapshot_every
            and len(getattr(self._kmeans, "centers", {})) == self.n_segments
        )

    def snapshot(self) -> SegmentSnapshot:
        """Export the current model as data, under the next version number."""
        self.version += 1
        self.samples_at_snapshot = self.samples
        means = tuple(float(self._scaler.means.get(f, 0.0)) for f in self.features)
        stds = tuple(
            math.sqrt(self._scaler.vars[f]) if self._scaler.vars.get(f, 0.0) > 0 else 1.0
            for f in self.features
        )
        centers = self._kmeans.centers
        return SegmentSnapshot(
            version=self.version,
            features=self.features,
            means=means,
            stds=stds,
            centers=tuple(
                tuple(float(centers[i].get(f, 0.0)) for f in self.features)
                for i in sorted(centers)
            ),
        )

    def predict(self, features: Mapping[str, float]) -> int:
        """River's own assignment, for checking that exported snapshots score the same."""
        x = {name: math.log1p(max(features[name], 0.0)) for name in self.features}
        return int(self._kmeans.predict_one(self._scaler.transform_one(x)))

    def dump(self) -> bytes:
        """The trainer itself, so a restart continues learning (same River version only)."""
        return pickle.dumps(self)

    @staticmethod
    def restore(blob: bytes | None) -> SegmentTrainer | None:
        if blob is None:
            return None
        try:
            trainer = pickle.loads(blob)
        except Exception as exc:  # a River upgrade can make old pickles unreadable
            log.warning("trainer state unreadable (%s); starting a new trainer", exc)
            return None
        return trainer if isinstance(trainer, SegmentTrainer) else None
