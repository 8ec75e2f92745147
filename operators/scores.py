"""Step 4 of a batch: every scoring moment scored at once, as arrays.

Segment distances (standardized ``log1p`` features to each center) and tag probabilities
(logistic models) for a matrix of moments, and from them what the per-user decisions need:
the nearest segment, and for the tags two bit sets per moment, the tags a user would *enter*
and the tags a user would *stay in* (hysteresis: a predictive tag is entered at ``enter`` and
left at ``exit``; a rule tag is both; a tag without a ready model keeps its members).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from operators.columns import Matrix, feature_matrix, log1p_clipped
from operators.scoring import PipelineConfig
from operators.segments import SegmentSnapshot
from operators.tags import TagModel

_OPS: Final[dict[str, Callable[[Matrix, float], npt.NDArray[np.bool_]]]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


Ints = npt.NDArray[np.int64]
_NONE: Final[Ints] = np.empty(0, dtype=np.int64)


@dataclass(slots=True)
class Scores:
    """Per moment (row): features, nearest segment, distances, and the tags' bit sets."""

    names: tuple[str, ...]  # the columns of ``features``
    features: Matrix
    best: Ints = field(default_factory=lambda: _NONE)  # nearest segment id (ties: lowest id)
    best_distance: Matrix = field(default_factory=lambda: np.empty(0))
    distances: Matrix = field(default_factory=lambda: np.empty((0, 0)))  # ``column[segment]``
    column: dict[int, int] = field(default_factory=dict)
    enter: Ints = field(default_factory=lambda: _NONE)  # tag bits a user outside would enter
    stay: Ints = field(default_factory=lambda: _NONE)  # tag bits a user inside would keep
    scored: list[str] = field(default_factory=list)  # predictive tags with a ready model
    probabilities: Matrix = field(default_factory=lambda: np.empty((0, 0)))  # moments x scored tags

    def row(self, moment: int, names: Sequence[str]) -> dict[str, float]:
        every = dict(zip(self.names, self.features[moment].tolist(), strict=True))
        return every if names is self.names else {name: every[name] for name in names}

    def tag_scores(self, moment: int) -> dict[str, float]:
        values = self.probabilities[moment].tolist() if self.scored else []
        return dict(zip(self.scored, values, strict=True))


def score_moments(
    versions: Matrix,
    at_ms: Sequence[int] | npt.NDArray[np.int64],
    names: tuple[str, ...],
    snapshot: SegmentSnapshot | None,
    config: PipelineConfig,
    tag_models: Mapping[str, TagModel],
) -> Scores:
    """Score every moment: ``versions`` holds the record version of each, ``names`` every
    feature the segment model and the tags read."""
    times = np.asarray(at_ms, dtype=np.float64)
    features = feature_matrix(versions, times, names)
    scores = Scores(names, features)
    count = len(times)
    if snapshot is not None and snapshot.centers and count:
        _segments(scores, snapshot)
    enter = np.zeros(count, dtype=np.int64)
    stay = np.zeros(count, dtype=np.int64)
    logs = log1p_clipped(features) if tag_models else features
    probabilities = []
    for bit, tag in enumerate(config.tags):
        if tag.kind == "rule":
            holds = _OPS[tag.op](features[:, names.index(tag.feature)], tag.value)
            enter |= holds.astype(np.int64) << bit
            stay |= holds.astype(np.int64) << bit
            continue
        model = tag_models.get(tag.name)
        if model is None or not model.ready:
            stay |= 1 << bit  # insufficient data: membership stays as it is
            continue
        columns = [names.index(f) for f in model.features]
        z = model.offset + logs[:, columns] @ np.asarray(model.coefficients, dtype=np.float64)
        with np.errstate(over="ignore"):
            p = np.where(z > -700, 1 / (1 + np.exp(-z)), 0.0)
        enter |= (p >= tag.enter).astype(np.int64) << bit
        stay |= (p > tag.exit).astype(np.int64) << bit
        scores.scored.append(tag.name)
        probabilities.append(p)
    scores.enter, scores.stay = enter, stay
    if probabilities:
        scores.probabilities = np.column_stack(probabilities)
    return scores


def _segments(scores: Scores, snapshot: SegmentSnapshot) -> None:
    # Centers in ascending id order, so argmin's first minimum is the lowest id on a tie.
    order = sorted(range(len(snapshot.segment_ids)), key=lambda i: snapshot.segment_ids[i])
    ids = [snapshot.segment_ids[i] for i in order]
    centers = np.asarray([snapshot.centers[i] for i in order], dtype=np.float64)
    columns = [scores.names.index(f) for f in snapshot.features]
    z = (log1p_clipped(scores.features[:, columns]) - np.asarray(snapshot.means)) / np.asarray(
        snapshot.stds
    )
    distances = np.sqrt(((z[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2))
    nearest = distances.argmin(axis=1)
    scores.column = {segment: i for i, segment in enumerate(ids)}
    scores.best = np.asarray(ids, dtype=np.int64)[nearest]
    scores.best_distance = distances[np.arange(len(nearest)), nearest]
    scores.distances = distances
