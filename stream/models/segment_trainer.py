"""The segment trainer: the one writer of the segment model.

It feeds a sample of user feature vectors to :class:`StreamSegmentModel` and, once the model's
warm-up is done (``warmup`` samples, 1,000 by default) and then every ``snapshot_every``
samples, exports what it learned as a frozen :class:`SegmentSnapshot` (plain
numbers) that scorers use. Before publishing, the new centers are matched to the previous
snapshot's segments (``operators.matching``) so segment ids stay stable; the resulting
:class:`Lineage` says which segments were created, retired or merged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

from operators.columns import Matrix
from operators.matching import Lineage, match_segments
from operators.segments import SegmentSnapshot
from stream.models.codec import SEGMENT_TRAINER, dump_state, load_state
from stream.models.segment_model import StreamSegmentModel

log = logging.getLogger(__name__)

# Two centers closer than this (standardized units) are the same segment across snapshots.
MATCH_CAP = 1.0
# The fewest samples per segment a first model starts from when it cannot wait for the warm-up.
EARLY_SAMPLES_PER_SEGMENT = 25


class SegmentTrainer:
    def __init__(
        self,
        features: Sequence[str],
        n_segments: int,
        *,
        snapshot_every: int = 2000,
        seed: int = 42,
        warmup: int | None = None,
        chunk_size: int = 100,
    ) -> None:
        self.features = tuple(features)
        self.n_segments = n_segments
        self.snapshot_every = snapshot_every
        self.seed = seed
        self.version = 0
        self.samples_at_snapshot = 0
        self.previous: SegmentSnapshot | None = None
        # Warm start on the first 1000 samples, or fewer if snapshots are asked for sooner.
        self.model = StreamSegmentModel(
            features,
            n_segments,
            seed=seed,
            chunk_size=chunk_size,
            warmup=min(1000, snapshot_every) if warmup is None else warmup,
        )

    @property
    def samples(self) -> int:
        return self.model.samples

    def learn_one(self, features: Mapping[str, float]) -> None:
        self.model.learn_one(features)

    def learn_many(self, vectors: Matrix) -> None:
        """Samples as rows, the features in ``features`` order."""
        self.model.learn_many(vectors)

    def warm_start_early(self, min_per_segment: int = EARLY_SAMPLES_PER_SEGMENT) -> bool:
        """Warm the model now if it has ``min_per_segment`` samples per segment (a first model
        for a stream too slow to fill the warm-up soon); True if the model is warm."""
        if not self.model.ready and self.samples >= min_per_segment * self.n_segments:
            self.model.warm_start_now()
        return self.model.ready

    def due(self) -> bool:
        """True once the model is warm, for the first snapshot at once (a new deployment gets
        segments after the warm-up, not after a full period), then each time enough samples
        arrived since the last one."""
        if not self.model.ready:
            return False
        return self.version == 0 or self.samples - self.samples_at_snapshot >= self.snapshot_every

    def snapshot(self) -> tuple[SegmentSnapshot, Lineage]:
        """Export the model as data under the next version, with ids matched to the last one."""
        if self.version == 0:  # the first model: the warm-up's centers, settled now
            self.model.settle(2 * self.n_segments, self.seed)
            # An early first model keeps the periods on their grid (every ``snapshot_every``).
            self.samples_at_snapshot = self.samples - self.samples % self.snapshot_every
        else:
            self.samples_at_snapshot = self.samples
        self.version += 1
        self.model.refine()
        means, stds = self.model.scaler()
        centers = self.model.centers()
        previous = self.previous
        if previous is None or previous.features != self.features:
            lineage = match_segments([], [], centers, MATCH_CAP)
        else:
            lineage = match_segments(
                previous.segment_ids,
                [_restandardize(c, previous, means, stds) for c in previous.centers],
                centers,
                MATCH_CAP,
            )
        total = sum(self.model.counts) or 1.0
        snapshot = SegmentSnapshot(
            version=self.version,
            features=self.features,
            means=means,
            stds=stds,
            centers=tuple(centers),
            segment_ids=lineage.ids,
            shares=tuple(c / total for c in self.model.counts),
        )
        self.previous = snapshot
        return snapshot, lineage

    def dump(self) -> bytes:
        """The trainer's state as versioned JSON, so a restart or another process continues
        learning. Plain numbers only: loading it never runs code, whatever Redis holds."""
        return dump_state(
            SEGMENT_TRAINER,
            {
                "snapshot_every": self.snapshot_every,
                "seed": self.seed,
                "model_version": self.version,
                "samples_at_snapshot": self.samples_at_snapshot,
                "previous": None if self.previous is None else self.previous.to_dict(),
                "model": self.model.to_dict(),
            },
        )

    @staticmethod
    def restore(blob: bytes | None) -> SegmentTrainer | None:
        """The trainer ``dump`` saved, or None (with a warning) if it cannot be read."""
        if blob is None:
            return None
        try:
            doc = load_state(blob, SEGMENT_TRAINER)
            model = StreamSegmentModel.from_dict(doc["model"])
            trainer = SegmentTrainer(
                model.features,
                model.n_segments,
                snapshot_every=int(doc["snapshot_every"]),
                seed=int(doc.get("seed", 42)),  # states saved before it was kept: the default
            )
            trainer.model = model
            trainer.version = int(doc["model_version"])
            trainer.samples_at_snapshot = int(doc["samples_at_snapshot"])
            previous = doc["previous"]
            trainer.previous = None if previous is None else SegmentSnapshot.from_dict(previous)
        except (ValueError, KeyError, TypeError, IndexError, AssertionError) as exc:
            log.warning("segment trainer state unreadable (%s); starting a new trainer", exc)
            return None
        return trainer


def _restandardize(
    center: Sequence[float],
    old: SegmentSnapshot,
    means: Sequence[float],
    stds: Sequence[float],
) -> tuple[float, ...]:
    """A center of ``old`` in the coordinates of the new scaler statistics."""
    return tuple(
        (z * old_std + old_mean - mean) / std
        for z, old_mean, old_std, mean, std in zip(
            center, old.means, old.stds, means, stds, strict=True
        )
    )
