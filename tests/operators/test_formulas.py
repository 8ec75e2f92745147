"""One formula table, three readers: the features of a record at a time are the same whether
read from a ``UserState`` (``features_at``: tools, the API, the evaluation), from a version row
(``version_features``: a label as it opens) or from a matrix of moments (``feature_matrix``:
every scoring), for any record and any time, before or after its last event."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.columns import feature_matrix, record_versions, version_features
from operators.events import EVENT_TYPES, Event
from operators.features import FEATURES, features_at, update_features
from operators.record import pack_state, read_records

T0 = 1_767_225_600_000

EVENTS = st.lists(
    st.tuples(
        st.sampled_from(EVENT_TYPES),
        st.integers(0, 200 * 24),  # hours
        st.floats(0.0, 10_000.0, allow_nan=False),
        st.sampled_from([None, "a", "b", "c", "d", "e"]),
    ),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(EVENTS, st.integers(-30 * 24, 400 * 24))
def test_every_reader_of_the_formulas_agrees(events: list[tuple], offset_hours: int) -> None:
    state = None
    for n, (kind, hours, amount, category) in enumerate(events):
        ts = T0 + hours * 3_600_000
        event = Event(f"e{n}", "u", kind, ts, amount if kind == "purchase" else None)
        event.category = category
        state = update_features(state, event)
    assert state is not None
    at_ms = state.last_seen_ms + offset_hours * 3_600_000
    version = record_versions(read_records([pack_state(state)]))[0]
    scalar = features_at(state, at_ms)
    from_row = version_features(version.tolist(), at_ms, FEATURES)
    matrix = feature_matrix(version[None, :], np.asarray([float(at_ms)]), FEATURES)[0]
    for j, name in enumerate(FEATURES):
        assert np.isclose(scalar[name], from_row[name], rtol=1e-12, atol=0), name
        assert np.isclose(scalar[name], matrix[j], rtol=1e-12, atol=0), name
