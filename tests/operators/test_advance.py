"""The compiled step (``operators.steps.advance``) makes the records the scalar formulas make,
on any stream: late events, redeliveries, expiries mid-batch, erasures, users coming back,
categories, purchases. (Its moments were proven equal to the per-event Python timeline it
replaced, on this property and on the bench stream's outputs, before that was deleted.)"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.columns import WINDOWS_AT, record_versions
from operators.erasure import EraseRequest
from operators.events import EVENT_TYPES, Event
from operators.features import UserState, update_features
from operators.pipeline import process_events
from operators.record import pack_state, read_records, recent_ids, unpack_state
from operators.steps.advance import advance
from operators.timeline import (
    CATEGORY,
    COUNTS,
    DUE,
    FIRST,
    LAST,
    LAST_PURCHASE,
    RECENT,
    SPEND,
    VERSION,
)
from operators.timeline import EVENT as EVENT_MOMENT
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
@given(st.lists(EVENT, max_size=12), st.lists(EVENT, max_size=40), st.integers(0, 40 * DAY))
def test_every_version_is_the_scalar_formulas_record(
    history: list[Event], events: list[Event], watermark_offset: int
) -> None:
    """One formula table, two paths: each version the compiled step makes is, to the bit, the
    record ``update_features`` (the scalar path) gives for the same event on the same record;
    and a user's row after the batch is its last version."""
    stored = stored_from(history)
    users = list(stored)
    watermark = T0 + watermark_offset - 20 * DAY if watermark_offset else 0
    records = read_records([stored[u] for u in users])
    rows, timeline = advance(list(users), records, events, TIMED, watermark, users, [], True)
    states = {u: unpack_state(b) for u, b in stored.items()}
    versions: dict[int, UserState | None] = {i: states[u] for i, u in enumerate(users)}
    for m, kind in enumerate(timeline.moments.kind):
        if kind != EVENT_MOMENT:
            continue
        event = events[timeline.moments.event[m]]
        before = timeline.moments.before[m]
        expected = update_features(None if before < 0 else versions[before], event)
        version = timeline.moments.version[m]
        versions[version] = expected
        assert (
            rows.versions[version].tolist()
            == record_versions(read_records([pack_state(expected)]))[0].tolist()
        )
    for row, user in enumerate(rows.users):
        if rows.updated[row]:
            r = rows.ints[row]
            last = versions[int(r[VERSION])]
            assert last is not None
            assert (r[FIRST], r[LAST], r[LAST_PURCHASE]) == (
                last.first_seen_ms,
                last.last_seen_ms,
                last.last_purchase_ms,
            )
            assert tuple(r[COUNTS : COUNTS + len(EVENT_TYPES)].tolist()) == last.counts
            assert (r[SPEND], r[CATEGORY]) == (last.spend_cents, last.category_bits)
            assert tuple(r[RECENT:].tolist()) == last.recent_event_ids
            assert tuple(rows.windows[row].tolist()) == last.windows
            assert rows.index.get(user, row) >= row


def test_stored_rows_read_their_recent_ids_and_windows() -> None:
    stored = stored_from([Event("a", "u1", "view", T0), Event("b", "u1", "purchase", T0, 9.5)])
    records = read_records(list(stored.values()))
    rows, _ = advance(["u1"], records, [], TIMED, 0, [], [], False)
    assert rows.ints[0, RECENT:].tolist() == recent_ids(records)[0].tolist()
    assert rows.versions[0, WINDOWS_AT:].tolist() == rows.windows[0].tolist()
    assert rows.ints[0, DUE] == records["next_due"][0]
