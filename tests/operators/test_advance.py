"""The compiled step (``operators.steps.advance``) notes the same moments and leaves the same
records as the per-event Python timeline it replaces, on any stream: late events, redeliveries,
expiries mid-batch, erasures, users coming back, categories, purchases."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.columns import WINDOWS_AT
from operators.erasure import EraseRequest
from operators.events import EVENT_TYPES, Event
from operators.pipeline import process_events
from operators.records import read_records, recent_ids
from operators.state_layout import pack_state
from operators.steps.advance import (
    CATEGORY,
    COUNTS,
    DUE,
    FIRST,
    LAST,
    LAST_PURCHASE,
    RECENT,
    SPEND,
    advance,
)
from operators.table import Table
from operators.timeline import run_timeline
from tests.support.pipeline import CONFIG, T0

DAY = 86_400_000
TIMED = replace(CONFIG, late_grace_ms=3_600_000, rescore_interval_ms=DAY, max_idle_ms=9 * DAY)

USERS = [f"u{i}" for i in range(6)]
EVENT = st.builds(
    lambda n, user, kind, minutes, amount, category: (
        EraseRequest(f"e{n}", user, "erase", T0, requested_by="t", via="cli")
        if kind == "erase"
        else Event(
            f"x{n}",
            user,
            kind,
            T0 + minutes * 60_000,
            amount if kind == "purchase" else None,
            category=category,
        )
    ),
    st.integers(0, 40),  # ids repeat: redeliveries
    st.sampled_from(USERS),
    st.sampled_from([*EVENT_TYPES, "purchase", "view", "erase"]),
    st.integers(0, 30 * 24 * 60),
    st.floats(0.01, 5000, allow_nan=False),
    st.sampled_from([None, "", "shoes", "books", "toys"]),
)


def stored_from(history: list[Event]) -> dict[str, bytes]:
    history = [e for e in history if not isinstance(e, EraseRequest)]
    out = process_events({}, sorted(history, key=lambda e: e.ts_ms), None, TIMED)
    return {user: pack_state(state) for user, state in out.states.items()}


@settings(max_examples=300, deadline=None)
@given(
    st.lists(EVENT, max_size=12),
    st.lists(EVENT, max_size=40),
    st.integers(0, 40 * DAY),
    st.lists(st.sampled_from(USERS), max_size=4),
)
def test_the_compiled_step_matches_the_python_timeline(
    history: list[Event], events: list[Event], watermark_offset: int, reassign: list[str]
) -> None:
    stored = stored_from(history)
    users = list(stored)
    watermark = T0 + watermark_offset - 20 * DAY if watermark_offset else 0
    due = [*users, "nobody"]
    records = read_records([stored[u] for u in users])
    active = (e.user_id for e in events)
    old_table = Table(list(users), read_records([stored[u] for u in users]), active)
    old = run_timeline(old_table, list(events), TIMED, watermark, due, reassign, True)
    rows, new = advance(list(users), records, events, TIMED, watermark, due, reassign, True)

    assert new.moments == old.moments
    assert new.late == old.late and new.failed == old.failed
    assert new.duplicates == old.duplicates and new.watermark_ms == old.watermark_ms
    assert new.processed_by_type == old.processed_by_type
    assert new.dues == old.dues
    assert rows.users == old_table.users and rows.index == old_table.index
    np.testing.assert_array_equal(rows.versions, old_table.versions())
    assert rows.next_due.tolist() == old_table.next_due
    for row in sorted(old_table.updated):
        r = rows.ints[row]
        assert (r[FIRST], r[LAST]) == (old_table.first[row], old_table.last[row])
        assert r[LAST_PURCHASE] == old_table.last_purchase[row]
        assert r[COUNTS : COUNTS + len(EVENT_TYPES)].tolist() == old_table.counts[row]
        assert (r[SPEND], r[CATEGORY]) == (old_table.spend[row], old_table.category[row])
        assert tuple(r[RECENT:].tolist()) == old_table.recent[row]
        assert tuple(rows.windows[row].tolist()) == old_table.windows[row]
    assert rows.updated.nonzero()[0].tolist() == sorted(old_table.updated)


def test_stored_rows_read_their_recent_ids_and_windows() -> None:
    stored = stored_from([Event("a", "u1", "view", T0), Event("b", "u1", "purchase", T0, 9.5)])
    records = read_records(list(stored.values()))
    rows, _ = advance(["u1"], records, [], TIMED, 0, [], [], False)
    assert rows.ints[0, RECENT:].tolist() == recent_ids(records)[0].tolist()
    assert rows.versions[0, WINDOWS_AT:].tolist() == rows.windows[0].tolist()
    assert rows.ints[0, DUE] == records["next_due"][0]
