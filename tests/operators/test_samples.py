"""The compiled labels step (``operators.steps.samples``) settles a sampled user's labels as
the rule ``operators.labels.settle_labels`` states, applied at every scoring: the same labels
released (with their logs), the same left open, stored byte for byte as ``pack_pending`` stores
them; its skipping of quiet moments by the stored summary changes nothing. (It replaced a
Python loop over ``settle_labels``; the bench stream's outputs were proven identical.)"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.labels import Label, label_phase, settle_labels
from operators.pending import PendingLabel, half, pack_pending, unpack_pending
from operators.steps.samples import _FAR, _HEAD, _pack, _packed_size, _parse, _settle
from operators.tags import NO_PURCHASE_WITHIN, PURCHASE_WITHIN, TagDefinition

DAY, MINUTE = 86_400_000, 60_000
T0 = 1_700_000_040_000 // MINUTE * MINUTE
TAGS = (
    TagDefinition(
        "churn", "predictive", label=NO_PURCHASE_WITHIN, horizon_days=5, features=("a", "b")
    ),
    TagDefinition("big", "rule", feature="a", value=1),
    TagDefinition("buyer", "predictive", label=PURCHASE_WITHIN, horizon_days=2, features=("b",)),
)
NAMES = ("a", "b")
EVERY = DAY

LABEL = st.builds(
    lambda tag, minutes, value, logs: PendingLabel(
        tag,
        T0 + minutes * MINUTE,
        tuple(half(x) for x in logs[: len(TAGS[tag].features)]),
        value,
    ),
    st.sampled_from([0, 2]),
    st.one_of(st.integers(-8 * 1440, 0), st.integers(-8, 0).map(lambda d: d * 1440)),
    st.sampled_from([None, 0, 1]),
    st.lists(st.floats(0, 20), min_size=2, max_size=2),
)
VISIT = st.tuples(
    # ms after the previous visit: often whole days, so horizons end exactly at some
    st.one_of(st.integers(1, 3 * DAY), st.sampled_from([DAY, 2 * DAY, DAY // 2, MINUTE])),
    st.booleans(),  # a purchase
    st.sampled_from([None, -3, 0, 2]),  # the last event before it (days before), None: new
)


def _kernel(
    digest: int, stored: list[PendingLabel], visits: list[tuple[int, int, int | None]]
) -> tuple[list[Label], bytes]:
    """One sampled user through the kernels, as ``offer_samples`` drives them."""
    blob = pack_pending(stored)
    n = len(visits)
    room = len(blob) // _HEAD + n * len(TAGS)
    start = np.array([0, room], dtype=np.int64)
    arena = np.zeros((room, 4), dtype=np.int64)
    logs = np.zeros((room + 1, 2), dtype=np.uint16)
    log_count = np.zeros(len(logs), dtype=np.int64)
    count, error = np.zeros(1, np.int64), np.zeros(1, np.int64)
    deadline, taken = np.full(1, _FAR, np.int64), np.full(1, -1, np.int64)
    horizon = np.array([t.horizon_ms for t in TAGS], dtype=np.int64)
    first = _parse(
        np.frombuffer(blob, dtype=np.uint8) if blob else np.zeros(0, np.uint8),
        np.array([0, len(blob)], dtype=np.int64),
        np.array([0] if blob else [], dtype=np.int64),
        start,
        count,
        arena,
        logs,
        log_count,
        deadline,
        taken,
        error,
        horizon,
    )
    released = np.zeros((room, 6), dtype=np.int64)
    opened = np.zeros((n * len(TAGS) + 1, 3), dtype=np.int64)
    dirty = np.zeros(1, dtype=np.bool_)
    releases, openings = _settle(
        np.zeros(n, dtype=np.int64),
        np.array([at for at, _, _ in visits], dtype=np.int64),
        np.array([p for _, p, _ in visits], dtype=np.int64),
        np.array([0 if seen is not None else -1 for _, _, seen in visits], dtype=np.int64),
        np.array([-_FAR if seen is None else seen for _, _, seen in visits], dtype=np.int64),
        np.array([label_phase(digest, EVERY)], dtype=np.int64),
        EVERY,
        deadline,
        taken,
        start,
        count,
        arena,
        error,
        horizon,
        np.array([t.kind == "predictive" for t in TAGS]),
        np.array([t.label == PURCHASE_WITHIN for t in TAGS], dtype=np.int64),
        first,
        released,
        opened,
        dirty,
        np.zeros(1, dtype=np.bool_),
    )
    assert error[0] == 0
    for i in range(openings):  # features of 0: logs of 0
        log_count[first + i] = len(TAGS[opened[i, 2]].features)
    values = logs.view(np.float16).astype(np.float64)
    out = [
        Label(tag, at, learned, tuple(values[ref, : log_count[ref]].tolist()), value)
        for _, tag, at, learned, value, ref in released[:releases].tolist()
    ]
    rows = np.zeros(1 if dirty[0] else 0, dtype=np.int64)
    ends = np.zeros(len(rows) + 1, dtype=np.int64)
    packed = np.zeros(_packed_size(rows, start, count, arena, log_count, ends), np.uint8)
    _pack(rows, start, count, arena, logs, log_count, ends, packed)
    return out, packed.tobytes() if dirty[0] else blob


@settings(max_examples=400, deadline=None)
@given(
    st.integers(0, 2**64 - 1),
    st.lists(LABEL, max_size=6),
    st.lists(VISIT, min_size=1, max_size=12),
)
def test_the_kernel_settles_labels_as_the_rule_states(
    digest: int, stored: list[PendingLabel], steps: list[tuple[int, bool, int | None]]
) -> None:
    stored.sort(key=lambda label: label.at_ms)  # labels open in time order
    visits, at = [], T0
    for gap, bought, seen in steps:
        at += gap
        visits.append((at, at if bought else 0, None if seen is None else at + seen * DAY))
    want: list[Label] = []
    current = list(stored)
    for at_ms, purchase, seen in visits:
        current = settle_labels(
            TAGS,
            EVERY,
            NAMES,
            current,
            want,
            digest,
            at_ms,
            purchase or None,
            seen,
            lambda t, names: dict.fromkeys(names, 0.0),
        )
    got, stored_form = _kernel(digest, stored, visits)
    assert got == want
    assert unpack_pending(stored_form) == current
    assert stored_form == pack_pending(current)
