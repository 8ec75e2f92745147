"""The trainers' batch updates agree with River's one-sample updates."""

from __future__ import annotations

import numpy as np
import pytest
from river import preprocessing

from stream.models.river_batch import scaler_learn_many

FEATURES = ("a", "b", "c")


def test_a_scaler_learns_batches_as_river_learns_one_sample_at_a_time() -> None:
    rng = np.random.default_rng(7)
    data = rng.lognormal(size=(1000, 3)) * [1.0, 50.0, 0.01]
    one_by_one, batched = preprocessing.StandardScaler(), preprocessing.StandardScaler()
    for row in data.tolist():
        one_by_one.learn_one(dict(zip(FEATURES, row, strict=True)))
    for start, size in ((0, 1), (1, 7), (8, 500), (508, 1), (509, 491)):
        scaler_learn_many(batched, FEATURES, data[start : start + size])
    scaler_learn_many(batched, FEATURES, data[:0])  # an empty batch changes nothing
    for f in FEATURES:
        assert batched.counts[f] == one_by_one.counts[f] == 1000
        assert batched.means[f] == pytest.approx(one_by_one.means[f], rel=1e-12)
        assert batched.vars[f] == pytest.approx(one_by_one.vars[f], rel=1e-9)
    x = {"a": 1.0, "b": 20.0, "c": 0.5}
    assert batched.transform_one(x) == pytest.approx(one_by_one.transform_one(x), rel=1e-9)
