"""The tag trainer: online logistic regression per predictive tag, learned from delayed labels.

Each resolved label (the features a user had when the prediction was made, and what happened
within the horizon) trains River's ``preprocessing.StandardScaler`` → ``linear_model.
LogisticRegression`` on log1p features. Before learning a label the current model predicts it
(prequential evaluation), and the last ``window`` (score, label) pairs give an exact ROC AUC
(rank-based: River's default ``metrics.ROCAUC`` uses 10 thresholds and under-reports on
imbalanced data) and the log-loss. A model is "ready" to score users once it has seen
``min_labels`` labels with at least ``min_per_class`` of each kind; before that the tag reports
insufficient data. Frozen models are exported as :class:`TagModel` data.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

import numpy as np
from river import drift, linear_model, optim, preprocessing

from operators.tags import TagDefinition, TagModel


class TagLearner:
    def __init__(self, tag: TagDefinition, *, window: int = 5000, min_labels: int = 300,
                 min_per_class: int = 30, learning_rate: float = 0.02) -> None:
        self.tag = tag
        self.window = window
        self.min_labels = min_labels
        self.min_per_class = min_per_class
        self.labels = 0
        self.positives = 0
        self.version = 0
        self.recent: deque[tuple[float, int]] = deque(maxlen=window)
        self._scaler = preprocessing.StandardScaler()
        self._model = linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate))
        # ADWIN on the prequential log-loss: a change in how well the tag predicts (drift).
        self._drift = drift.ADWIN()
        self.drifts = 0

    def learn(self, logs: Sequence[float], label: int) -> None:
        """Learn one outcome from ``log1p`` of the tag's features (a ``Label``'s ``logs``)."""
        x = dict(zip(self.tag.features, logs, strict=True))
        if self.labels:
            score = self._model.predict_proba_one(self._scaler.transform_one(x)).get(True, 0.5)
            self.recent.append((float(score), label))
            p = min(max(float(score), 1e-6), 1 - 1e-6)
            self._drift.update(-math.log(p if label else 1 - p))
            self.drifts += int(self._drift.drift_detected)
        self._scaler.learn_one(x)
        self._model.learn_one(self._scaler.transform_one(x), bool(label))
        self.labels += 1
        self.positives += label

    @property
    def ready(self) -> bool:
        negatives = self.labels - self.positives
        return self.labels >= self.min_labels and min(self.positives, negatives) >= \
            self.min_per_class

    def metrics(self) -> dict[str, float]:
        scores = [s for s, _ in self.recent]
        labels = [y for _, y in self.recent]
        out = {"labels": float(self.labels), "positive_share":
               self.positives / self.labels if self.labels else 0.0}
        auc = exact_auc(scores, labels)
        if auc is not None:
            out["auc"] = auc
            out["log_loss"] = log_loss(scores, labels)
        return out

    def export(self) -> TagModel:
        """The current model as frozen data, under the next version."""
        self.version += 1
        return self.model()

    def model(self) -> TagModel:
        """The current model as frozen data, under the current version."""
        names = self.tag.features
        means = tuple(float(self._scaler.means.get(f, 0.0)) for f in names)
        stds = tuple(math.sqrt(v) if (v := self._scaler.vars.get(f, 0.0)) > 0 else 1.0
                     for f in names)
        weights = tuple(float(self._model.weights.get(f, 0.0)) for f in names)
        return TagModel(tag=self.tag.name, version=self.version, features=names, means=means,
                        stds=stds, weights=weights, intercept=float(self._model.intercept),
                        ready=self.ready, metrics=self.metrics())


def exact_auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """ROC AUC by ranks (ties share their average rank); None without both classes."""
    y = np.asarray(labels)
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return None
    values = np.asarray(scores, dtype=float)
    order = values.argsort(kind="mergesort")
    ranks = np.empty(len(values))
    sorted_values = values[order]
    # Average ranks over runs of equal scores.
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2)
                 / (positives * negatives))


def log_loss(scores: Sequence[float], labels: Sequence[int]) -> float:
    p = np.clip(np.asarray(scores, dtype=float), 1e-12, 1 - 1e-12)
    y = np.asarray(labels)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
