"""River's mini-batch updates on plain numpy arrays.

River's ``learn_many`` methods take a dataframe (pandas, polars, ...), a dependency segstream
does not otherwise need; these apply the same formulas to a model's public statistics, so the
trainers learn a batch's samples in one step instead of one call per sample.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from river import preprocessing


def scaler_learn_many(
    scaler: preprocessing.StandardScaler,
    features: Sequence[str],
    x: npt.NDArray[np.float64],
) -> None:
    """``StandardScaler.learn_many``: merge the batch's mean and variance (columns of ``x``,
    in ``features`` order) into the running ones (Chan et al.'s pairwise update)."""
    n = len(x)
    if not n:
        return
    batch_means, batch_vars = x.mean(axis=0).tolist(), x.var(axis=0).tolist()
    for f, mean, var in zip(features, batch_means, batch_vars, strict=True):
        count = scaler.counts[f]
        a, b = count / (count + n), n / (count + n)
        old = scaler.means[f]
        scaler.means[f] = a * old + b * mean
        scaler.vars[f] = a * scaler.vars[f] + b * var + a * b * (old - mean) ** 2
        scaler.counts[f] = count + n
