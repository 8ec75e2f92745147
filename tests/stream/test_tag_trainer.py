from __future__ import annotations

import json
import math
import random

import pytest
from sklearn.metrics import roc_auc_score

from operators.tags import NO_PURCHASE_WITHIN, TagDefinition, predict_one
from stream.models.tag_trainer import (
    TagTrainer,
    dump_tag_trainers,
    exact_auc,
    log_loss,
    restore_tag_trainers,
)

TAG = TagDefinition(
    "churn_risk",
    "predictive",
    label=NO_PURCHASE_WITHIN,
    horizon_days=90,
    features=("inactive_days", "frequency"),
)


def labelled(n: int, seed: int) -> list[tuple[tuple[float, float], int]]:
    """Churn grows with inactivity and falls with frequency (a known logistic truth)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        inactive, frequency = rng.expovariate(1 / 30), float(rng.randint(1, 12))
        z = 1.5 * (math.log1p(inactive) - 3) - 0.8 * (math.log1p(frequency) - 1.2)
        out.append(((inactive, frequency), int(rng.random() < 1 / (1 + math.exp(-z)))))
    return out


def logs(features: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(math.log1p(v) for v in features)


@pytest.mark.parametrize("seed", range(5))
def test_exact_auc_matches_scikit_learn_with_ties(seed: int) -> None:
    rng = random.Random(seed)
    labels = [rng.randint(0, 1) for _ in range(300)]
    scores = [round(rng.random() + 0.3 * y, 1) for y in labels]  # rounding makes ties
    assert exact_auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores))
    assert exact_auc(scores, [1] * 300) is None


def test_learns_online_reports_insufficient_data_then_a_useful_model() -> None:
    learner = TagTrainer(TAG, min_labels=300, min_per_class=30)
    data = labelled(6000, seed=1)
    for features, label in data[:200]:
        learner.learn_one(logs(features), label)
    assert not learner.ready and not learner.export().ready
    for features, label in data[200:]:
        learner.learn_one(logs(features), label)
    model = learner.export()
    assert model.ready and model.version == 2
    assert model.metrics["auc"] > 0.7 and model.metrics["labels"] == 6000
    # The exported data scores held-out users as well as the prequential figure says.
    held_out = labelled(2000, seed=2)
    scores = [predict_one(model, dict(zip(TAG.features, f, strict=True))) for f, _ in held_out]
    truth = [y for _, y in held_out]
    assert roc_auc_score(truth, scores) == pytest.approx(model.metrics["auc"], abs=0.05)
    assert log_loss(scores, truth) < 0.69  # better than a coin


def test_learners_are_stored_as_data_and_learn_on_as_before() -> None:
    learner = TagTrainer(TAG, min_labels=300, min_per_class=30)
    data = labelled(3000, seed=3)
    for features, label in data[:1500]:
        learner.learn_one(logs(features), label)
    blob = dump_tag_trainers([learner])
    assert json.loads(blob)["format"] == "segstream.tag-learners"
    restored = restore_tag_trainers(blob)[TAG.name]
    assert restored.model() == learner.model()
    for features, label in data[1500:]:
        learner.learn_one(logs(features), label)
        restored.learn_one(logs(features), label)
    assert restored.model() == learner.model()
    assert restore_tag_trainers(b"\x80\x04 an old pickle") == {}
