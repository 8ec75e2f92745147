"""``segstream evaluate`` says who it judged: users that expired before the end of a long
history are counted, by month, and the figures compare the users the service kept with an
offline fit on exactly those users."""

from __future__ import annotations

from typing import Any

from operators.features import DAY_MS
from stream.evaluation.report import _user_lines
from stream.evaluation.run import _run_seed

T0 = 1_700_000_000_000  # 2023-11-14


def purchase(user: str, day: int, amount: float) -> dict[str, Any]:
    ts = T0 + day * DAY_MS
    return {"event_id": f"{user}-{day}", "user_id": user, "type": "purchase", "ts": ts,
            "amount": amount}  # fmt: skip


def test_users_idle_past_the_expiry_are_counted_and_left_out() -> None:
    gone = [purchase(f"gone-{i}", 0, 10.0 + i) for i in range(40)]
    kept = [purchase(f"kept-{i}", day, 50.0 + i) for i in range(40) for day in (0, 300, 450)]
    events = sorted(gone + kept, key=lambda e: (e["ts"], e["user_id"]))
    run = _run_seed(
        events, 2, ("recency_days", "frequency", "monetary"), 0, T0 + 451 * DAY_MS, None, False
    )
    assert run.users == 40  # the kept buyers only
    assert run.buyers_expired == 40
    assert run.expired_by_month == {"2024-12": 40}  # day 400 after 2023-11-14
    lines = "\n".join(
        _user_lines(
            {
                "evaluated": run.users,
                "buyers_expired": run.buyers_expired,
                "expired": 40,
                "expired_by_month": run.expired_by_month,
                "max_idle_days": 400,
            }
        )
    )
    assert "the 40 buyers the service still held" in lines and "| 2024-12 | 40 |" in lines
