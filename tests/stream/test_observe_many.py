"""``stream.metrics.observe_many`` leaves a histogram as one ``observe`` per value would: the
same bucket counts (bounds included: a value on a bound counts in it), count and sum."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from stream.metrics import observe_many

BOUNDS = (0.005, 0.01, 0.1, 1.0, 10.0)


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    return {
        f"{s.name}{sorted(s.labels.items())}": s.value
        for family in registry.collect()
        for s in family.samples
        if not s.name.endswith("_created")
    }


@given(
    st.lists(st.one_of(st.sampled_from(BOUNDS), st.floats(0, 100, allow_nan=False)), max_size=200)
)
def test_a_bulk_observation_counts_as_one_per_value(values: list[float]) -> None:
    one, many = CollectorRegistry(), CollectorRegistry()
    each = Histogram("latency_seconds", "h", buckets=BOUNDS, registry=one)
    bulk = Histogram("latency_seconds", "h", buckets=BOUNDS, registry=many)
    for value in values:
        each.observe(value)
    observe_many(bulk, np.asarray(values, dtype=np.float64))
    want, got = _samples(one), _samples(many)
    assert want.keys() == got.keys()
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-9, abs=1e-9), name
