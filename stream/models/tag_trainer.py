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

import logging
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
from river import drift, linear_model, optim, preprocessing

from operators.tags import TagDefinition, TagModel
from stream.models.codec import (
    TAG_TRAINERS,
    dump_state,
    load_state,
    scaler_from_dict,
    scaler_to_dict,
)

log = logging.getLogger(__name__)


class TagTrainer:
    def __init__(
        self,
        tag: TagDefinition,
        *,
        window: int = 5000,
        min_labels: int = 300,
        min_per_class: int = 30,
        learning_rate: float = 0.02,
    ) -> None:
        self.tag = tag
        self.window = window
        self.min_labels = min_labels
        self.min_per_class = min_per_class
        self.learning_rate = learning_rate
        self.labels = 0
        self.positives = 0
        self.version = 0
        self.recent: deque[tuple[float, int]] = deque(maxlen=window)
        self._scaler = preprocessing.StandardScaler()
        self._model = linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate))
        # ADWIN on the prequential log-loss: a change in how well the tag predicts (drift).
        self._drift = drift.ADWIN()
        self.drifts = 0

    def learn_one(self, logs: Sequence[float], label: int) -> None:
        """Learn one outcome from ``log1p`` of the tag's features (a ``Label``'s ``logs``)."""
        x = dict(zip(self.tag.features, logs, strict=True))
        if self.labels:
            score = self._model.predict_proba_one(self._scaler.transform_one(x)).get(True, 0.5)
            self.recent.append((float(score), label))
            self._drift.update(_loss(float(score), label))
            self.drifts += int(self._drift.drift_detected)
        self._scaler.learn_one(x)
        self._model.learn_one(self._scaler.transform_one(x), bool(label))
        self.labels += 1
        self.positives += label

    def to_dict(self) -> dict[str, Any]:
        return {
            "tag": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.tag).items()},
            "window": self.window,
            "min_labels": self.min_labels,
            "min_per_class": self.min_per_class,
            "learning_rate": self.learning_rate,
            "labels": self.labels,
            "positives": self.positives,
            "version": self.version,
            "drifts": self.drifts,
            "recent": [list(pair) for pair in self.recent],
            "scaler": scaler_to_dict(self._scaler),
            "weights": dict(self._model._weights),
            "intercept": self._model.intercept,
            "iterations": self._model.optimizer.n_iterations,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> TagTrainer:
        fields: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in doc["tag"].items()
        }
        learner = cls(
            TagDefinition(**fields),
            window=int(doc["window"]),
            min_labels=int(doc["min_labels"]),
            min_per_class=int(doc["min_per_class"]),
            learning_rate=float(doc["learning_rate"]),
        )
        learner.labels, learner.positives = int(doc["labels"]), int(doc["positives"])
        learner.version, learner.drifts = int(doc["version"]), int(doc["drifts"])
        learner._scaler = scaler_from_dict(doc["scaler"])
        for feature, weight in doc["weights"].items():
            learner._model._weights[feature] = float(weight)
        learner._model.intercept = float(doc["intercept"])
        learner._model.optimizer.n_iterations = int(doc["iterations"])
        for score, label in doc["recent"]:
            learner.recent.append((float(score), int(label)))
            # ADWIN's buckets are not stored: it is rebuilt from the recent prequential losses.
            learner._drift.update(_loss(float(score), int(label)))
        return learner

    @property
    def ready(self) -> bool:
        negatives = self.labels - self.positives
        return (
            self.labels >= self.min_labels and min(self.positives, negatives) >= self.min_per_class
        )

    def metrics(self) -> dict[str, float]:
        scores = [s for s, _ in self.recent]
        labels = [y for _, y in self.recent]
        out = {
            "labels": float(self.labels),
            "positive_share": self.positives / self.labels if self.labels else 0.0,
        }
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
        stds = tuple(
            math.sqrt(v) if (v := self._scaler.vars.get(f, 0.0)) > 0 else 1.0 for f in names
        )
        weights = tuple(float(self._model.weights.get(f, 0.0)) for f in names)
        return TagModel(
            tag=self.tag.name,
            version=self.version,
            features=names,
            means=means,
            stds=stds,
            weights=weights,
            intercept=float(self._model.intercept),
            ready=self.ready,
            metrics=self.metrics(),
        )


def dump_tag_trainers(learners: Iterable[TagTrainer]) -> bytes:
    """The learners' state as versioned JSON: numbers and names, never a pickle."""
    return dump_state(TAG_TRAINERS, {"learners": [learner.to_dict() for learner in learners]})


def restore_tag_trainers(blob: bytes | None) -> dict[str, TagTrainer]:
    """The learners ``dump_tag_trainers`` saved, by tag name; {} (with a warning) if unreadable."""
    if not blob:
        return {}
    try:
        doc = load_state(blob, TAG_TRAINERS)
        learners = [TagTrainer.from_dict(d) for d in doc["learners"]]
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("tag learner state unreadable (%s); the tags start learning anew", exc)
        return {}
    return {learner.tag.name: learner for learner in learners}


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
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _loss(score: float, label: int) -> float:
    p = min(max(score, 1e-6), 1 - 1e-6)
    return -math.log(p if label else 1 - p)


def log_loss(scores: Sequence[float], labels: Sequence[int]) -> float:
    p = np.clip(np.asarray(scores, dtype=float), 1e-12, 1 - 1e-12)
    y = np.asarray(labels)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())
