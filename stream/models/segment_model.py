"""The online segment model: k-means on standardized log1p features, learned from a stream.

Built on River: ``preprocessing.StandardScaler`` keeps the running mean and variance, and
``cluster.KMeans`` holds the centers and applies the sequential k-means update (``learn_one``
moves the nearest center towards a point by ``halflife``). Stock ``cluster.STREAMKMeans``
clusters each chunk from random centers and feeds every chunk center, touched or not, into
the global model, has no k-means++ start, never re-seeds a dead center and draws its random
centers in an order that depends on ``PYTHONHASHSEED`` (DESIGN.md measures 2.4-4.2x the
offline cost). This model keeps the chunked shape and fixes those:

- warm start: the first ``warmup`` samples are clustered offline with k-means++ seeding and
  Lloyd iterations, which gives the initial centers;
- centers live in log1p space (the scaler only weighs the distances), so its drift never moves
  them;
- each chunk of ``chunk_size`` samples is assigned to the current centers; only the centers
  that received points move, towards the mean of their points, by the share those points have
  of the center's decayed count (mini-batch k-means with forgetting, so the model follows
  drift with a memory of about ``memory`` samples);
- a center whose share of the decayed counts falls below ``1 / (20 k)`` is re-seeded on a
  recent sample far from the other centers (k-means++ sampling from a reservoir of recent
  points), and every ``memory / 4`` samples each center in turn is tentatively moved the same
  way; the best move is kept if it cuts the k-means cost on the reservoir by over 10% (this
  escapes the local optimum where one center covers two groups while another idles);
- before each snapshot, a few Lloyd iterations on the reservoir polish the centers;
- every random choice comes from one ``random.Random(seed)`` and every center holds every
  feature explicitly, so the same samples give the same model in any process.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from river import cluster, preprocessing

from stream.models.codec import scaler_from_dict, scaler_to_dict
from stream.models.kmeans import Point, kmeans_plus_plus, lloyd, relocated
from stream.models.river_batch import scaler_learn_many


class StreamSegmentModel:
    def __init__(
        self,
        features: Sequence[str],
        n_segments: int,
        *,
        seed: int = 42,
        chunk_size: int = 100,
        warmup: int = 1000,
        memory: int = 10_000,
        reservoir_size: int = 2000,
        lloyd_iterations: int = 20,
    ) -> None:
        self.features = tuple(features)
        self.n_segments = n_segments
        self.chunk_size = chunk_size
        self.warmup = max(warmup, n_segments)
        self.memory = memory
        self.reservoir_size = reservoir_size
        self.lloyd_iterations = lloyd_iterations
        self.samples = 0
        self.chunks = 0
        self.relocate_every_chunks = max(1, memory // (4 * chunk_size))
        self.counts = [0.0] * n_segments  # decayed number of samples each center has absorbed
        self._rng = random.Random(seed)
        self._scaler = preprocessing.StandardScaler()
        self._kmeans = cluster.KMeans(n_clusters=n_segments, halflife=0.0, seed=seed)
        self._reservoir: list[Point] = []  # log1p space: independent of the scaler's drift
        # Samples learned since the last full chunk (log1p space), a row each.
        self._chunk = np.empty((0, len(self.features)), dtype=np.float64)
        self._ready = False

    def learn_one(self, features: Mapping[str, float]) -> None:
        self.learn_many(np.asarray([[features[f] for f in self.features]], dtype=np.float64))

    def learn_many(self, vectors: npt.NDArray[np.float64]) -> None:
        """Learn samples in order, a batch at a time: the scaler's statistics merged once per
        batch (River's mini-batch formula), each full chunk's nearest centers found as arrays.
        ``vectors``: a row per sample, the features in ``features`` order."""
        if not len(vectors):
            return
        # C order: numpy takes its SIMD loops (last bits differ from the strided ones) only then.
        x = np.log1p(np.maximum(np.ascontiguousarray(vectors, dtype=np.float64), 0.0))
        if not self._ready:  # the warm start happens at an exact sample count
            warm = min(len(x), self.warmup - self.samples)
            self._absorb(x[:warm])
            x = x[warm:]
            if self.samples < self.warmup:
                return
            self._warm_start()
        if len(x):
            self._absorb(x)
            self._chunk = np.concatenate([self._chunk, x])
        size = self.chunk_size
        full = len(self._chunk) // size  # each full chunk in order, the rest kept for later
        for start in range(0, full * size, size):
            self._learn_chunk(self._chunk[start : start + size])
        self._chunk = self._chunk[full * size :]

    def _absorb(self, x: npt.NDArray[np.float64]) -> None:
        """Count ``x`` (log1p points) in the scaler and the reservoir."""
        scaler_learn_many(self._scaler, self.features, x)
        self.samples += len(x)
        reservoir, size, memory, rng = self._reservoir, self.reservoir_size, self.memory, self._rng
        for point in x.tolist():  # ``_remember``, inline: it runs for every sample
            if len(reservoir) < size:
                reservoir.append(tuple(point))
            elif rng.random() * memory < size:
                reservoir[rng.randrange(size)] = tuple(point)

    @property
    def ready(self) -> bool:
        return self._ready

    def warm_start_now(self) -> None:
        """Start from the samples absorbed so far, before the warm-up's count (a slow stream's
        first model); then learn as after any warm start."""
        if not self._ready and self.samples >= self.n_segments:
            self._warm_start()

    def _remember(self, x: Point) -> None:
        """A reservoir biased to recent points: once full, each sample enters with probability
        ``reservoir_size / memory`` in a random slot, so points live about ``memory`` samples."""
        if len(self._reservoir) < self.reservoir_size:
            self._reservoir.append(x)
        elif self._rng.random() * self.memory < self.reservoir_size:
            self._reservoir[self._rng.randrange(self.reservoir_size)] = x

    def _warm_start(self) -> None:
        points = self._reservoir_points()
        centers = kmeans_plus_plus(points, self.n_segments, self._rng)
        centers, sizes = lloyd(points, centers, self.lloyd_iterations)
        self._set_centers([self.unstandardize(c) for c in centers])
        self.counts = [float(s) for s in sizes]
        self._ready = True

    def _learn_chunk(self, points: npt.NDArray[np.float64]) -> None:
        """Move each touched center towards the mean of its points (log1p space)."""
        means, stds = self.scaler()
        data = np.asarray(points, dtype=np.float64)
        z = (data - np.asarray(means)) / np.asarray(stds)
        centers = np.asarray(self.centers(), dtype=np.float64)
        labels = ((z[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
        sizes = np.bincount(labels, minlength=self.n_segments).tolist()
        sums = np.zeros((self.n_segments, data.shape[1]))
        np.add.at(sums, labels, data)
        forget = math.exp(-len(points) / self.memory)
        self.counts = [c * forget for c in self.counts]
        for i, size in enumerate(sizes):
            if not size:
                continue  # only touched centers move
            self.counts[i] += size
            # River's update, c += halflife * (mean - c), with the chunk's share as the rate.
            self._kmeans.halflife = size / self.counts[i]
            center = self._kmeans.centers[i]
            for f, total in zip(self.features, sums[i].tolist(), strict=True):
                center[f] += self._kmeans.halflife * (total / size - center[f])
        self.chunks += 1
        self._reseed_dead_centers()
        if self.chunks % self.relocate_every_chunks == 0:
            self._relocate_a_center()

    def _relocate_a_center(self, rng: random.Random | None = None) -> None:
        """Escape a local optimum: one center covering two groups while another idles.

        On the reservoir of recent points, compare the current centers with each variant that
        moves one center onto a far point (k-means++ sampling), all refined by a few Lloyd
        iterations; adopt the best variant if it cuts the cost by over 10%.
        """
        points = self._reservoir_points()
        best = relocated(points, self.centers(), rng or self._rng)
        if best is not None:
            self._adopt(*best, len(points))

    def settle(self, attempts: int, seed: int) -> None:
        """Run the relocation test ``attempts`` times now. A first model is published right
        after the warm-up, before the periodic test has had a chance to run; a center left in
        a poor place would move at the next model and relabel many users. Its draws come
        from their own generator (``seed``): the model's stay as they would have been."""
        rng = random.Random(f"{seed}:settle")
        for _ in range(attempts):
            self._relocate_a_center(rng)

    def _reseed_dead_centers(self) -> None:
        total = sum(self.counts)
        floor = total / (20 * self.n_segments)
        for i, count in enumerate(self.counts):
            if count >= floor:
                continue
            others = [c for j, c in enumerate(self.centers()) if j != i]
            points = self._reservoir_points()
            seed = kmeans_plus_plus(points, 1, self._rng, existing=others)[0]
            self._kmeans.centers[i] = _center(self.features, self.unstandardize(seed))
            self.counts[i] = floor

    def refine(self, iterations: int = 10) -> None:
        """Polish the centers with Lloyd iterations on the reservoir of recent points.

        Called before each snapshot: the online updates track the stream, and a few batch
        iterations on recent points take the centers the rest of the way to a local optimum. A
        center no recent point is nearest to is re-seeded first (k-means++ on the reservoir).
        """
        if not self._ready:
            return
        points = self._reservoir_points()
        centers, sizes = lloyd(points, self.centers(), iterations)
        for _ in range(self.n_segments):  # an empty cluster is re-seeded on a far point
            empty = [i for i, n in enumerate(sizes) if n == 0]
            if not empty:
                break
            others = [c for i, c in enumerate(centers) if i != empty[0]]
            centers[empty[0]] = kmeans_plus_plus(points, 1, self._rng, existing=others)[0]
            centers, sizes = lloyd(points, centers, iterations)
        self._adopt(centers, sizes, len(points))

    def _adopt(self, centers: Sequence[Point], sizes: Sequence[int], points: int) -> None:
        """Centers refit on ``points`` reservoir points; their counts keep the model's total."""
        scale = sum(self.counts) / max(points, 1)
        self._set_centers([self.unstandardize(c) for c in centers])
        self.counts = [max(n * scale, 1e-9) for n in sizes]

    def to_dict(self) -> dict[str, Any]:
        """Everything the model learned, as JSON-ready numbers (never a pickle)."""
        version, internal, gauss = self._rng.getstate()
        return {
            "features": list(self.features),
            "n_segments": self.n_segments,
            "chunk_size": self.chunk_size,
            "warmup": self.warmup,
            "memory": self.memory,
            "reservoir_size": self.reservoir_size,
            "lloyd_iterations": self.lloyd_iterations,
            "samples": self.samples,
            "chunks": self.chunks,
            "counts": self.counts,
            "rng": [version, list(internal), gauss],
            "ready": self._ready,
            "scaler": scaler_to_dict(self._scaler),
            "centers": [
                [self._kmeans.centers[i][f] for f in self.features] for i in range(self.n_segments)
            ]
            if self._ready
            else [],
            "reservoir": [list(p) for p in self._reservoir],
            "chunk": self._chunk.tolist(),
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> StreamSegmentModel:
        model = cls(
            doc["features"],
            int(doc["n_segments"]),
            chunk_size=int(doc["chunk_size"]),
            warmup=int(doc["warmup"]),
            memory=int(doc["memory"]),
            reservoir_size=int(doc["reservoir_size"]),
            lloyd_iterations=int(doc["lloyd_iterations"]),
        )
        model.samples, model.chunks = int(doc["samples"]), int(doc["chunks"])
        model.counts = [float(c) for c in doc["counts"]]
        version, internal, gauss = doc["rng"]
        model._rng.setstate((int(version), tuple(int(i) for i in internal), gauss))
        model._scaler = scaler_from_dict(doc["scaler"])
        model._reservoir = [tuple(float(v) for v in p) for p in doc["reservoir"]]
        chunk = np.asarray(doc["chunk"], dtype=np.float64)
        model._chunk = chunk.reshape(len(chunk), len(model.features))
        model._ready = bool(doc["ready"])
        if model._ready:
            model._set_centers([tuple(float(v) for v in c) for c in doc["centers"]])
        return model

    def _set_centers(self, centers: Sequence[Point]) -> None:
        self._kmeans.centers = {i: _center(self.features, c) for i, c in enumerate(centers)}

    def centers(self) -> list[Point]:
        """The centers in standardized coordinates (current scaler), in index order.

        Centers are kept in log1p space, so the scaler's slow drift changes only how distances
        weigh each feature, never where a center is.
        """
        return [
            self.standardize(tuple(self._kmeans.centers[i][f] for f in self.features))
            for i in range(self.n_segments)
        ]

    def scaler(self) -> tuple[Point, Point]:
        """The scaler's (means, standard deviations) of the log1p features."""
        means = tuple(float(self._scaler.means.get(f, 0.0)) for f in self.features)
        stds = tuple(
            math.sqrt(v) if (v := self._scaler.vars.get(f, 0.0)) > 0 else 1.0 for f in self.features
        )
        return means, stds

    def _reservoir_points(self) -> npt.NDArray[np.float64]:
        """The reservoir in standardized coordinates, a row per point (it runs on every refit,
        and each relocation test reads it k + 1 times)."""
        means, stds = self.scaler()
        z: npt.NDArray[np.float64] = np.asarray(self._reservoir, dtype=float)
        z -= np.asarray(means)
        z /= np.asarray(stds)
        return z

    def standardize(self, x: Point) -> Point:
        means, stds = self.scaler()
        return tuple((v - m) / s for v, m, s in zip(x, means, stds, strict=True))

    def unstandardize(self, z: Point) -> Point:
        means, stds = self.scaler()
        return tuple(v * s + m for v, m, s in zip(z, means, stds, strict=True))


def _center(features: Sequence[str], point: Point) -> defaultdict[str, float]:
    # River's KMeans draws a random value for a missing key; every key is present here.
    return defaultdict(float, zip(features, point, strict=True))
