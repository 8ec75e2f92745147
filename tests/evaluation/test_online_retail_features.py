"""On the real UCI Online Retail file, streaming features equal an offline computation."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest

from operators.decoding import decode_event
from operators.events import Event
from operators.features import DAY_MS, UserState, features_at
from operators.pipeline import PipelineConfig, process_events
from stream.evaluation.offline import CustomerHistory, read_online_retail, reference_features
from stream.feeds.history import ONLINE_RETAIL, read_history
from stream.feeds.simulator import encode
from tests.support.data import online_retail_path

SNAPSHOT_MS = int(datetime(2011, 9, 10, 12, 51, tzinfo=UTC).timestamp() * 1000)


@cache
def events() -> list[dict[str, Any]]:
    return read_history(online_retail_path(), ONLINE_RETAIL)


@cache
def offline() -> dict[str, CustomerHistory]:
    return read_online_retail(online_retail_path())


def stream_until(until_ms: int) -> dict[str, UserState]:
    decoded = [decode_event(*encode(e)) for e in events() if int(e["ts"]) <= until_ms]
    valid = [e for e in decoded if isinstance(e, Event)]
    assert len(valid) == len(decoded), "the reader produced events the decoder rejects"
    config = PipelineConfig(segment_features=("recency_days",), train_sample_permille=0)
    return process_events({}, valid, None, config).states


def test_the_reader_reproduces_the_published_statistics() -> None:
    purchases = [e for e in events() if e["type"] == "purchase"]
    assert len(purchases) == 18_532
    assert len({e["user_id"] for e in purchases}) == 4_338
    assert round(sum(round(e["amount"] * 100) for e in purchases)) == 891_140_790
    times = [int(e["ts"]) for e in events()]
    assert times == sorted(times)


@pytest.mark.parametrize("when", ["one day after the last event", "at the 2011-09-10 snapshot"])
def test_streaming_features_equal_the_offline_computation(when: str) -> None:
    last_ms = max(int(e["ts"]) for e in events())
    at_ms = last_ms + DAY_MS if when.startswith("one day") else SNAPSHOT_MS
    states = stream_until(at_ms)
    compared = 0
    for user, history in offline().items():
        if (
            history.purchase_ms.size + history.cancel_ms.size == 0
            or min([*history.purchase_ms, *history.cancel_ms]) > at_ms
        ):
            assert user not in states
            continue
        truncated = CustomerHistory(
            purchase_ms=history.purchase_ms[history.purchase_ms <= at_ms],
            purchase_cents=history.purchase_cents[history.purchase_ms <= at_ms],
            cancel_ms=history.cancel_ms[history.cancel_ms <= at_ms],
        )
        want = reference_features(truncated, at_ms)
        state = states[user]
        got = features_at(state, at_ms)
        # Counts and money exact, days to 1e-6, windows to float32 precision.
        for name in ("frequency", "cancellations", "events"):
            assert got[name] == want[name], (user, name)
        assert state.spend_cents == want["monetary_cents"], user
        for name in ("recency_days", "tenure_days", "inactive_days"):
            assert got[name] == pytest.approx(want[name], abs=1e-6), (user, name)
        for name in (
            "purchases_7d",
            "purchases_30d",
            "purchases_90d",
            "spend_7d",
            "spend_30d",
            "spend_90d",
        ):
            assert got[name] == pytest.approx(want[name], rel=1e-5, abs=1e-9), (user, name)
        compared += 1
    assert compared == len(states) > 3_000
