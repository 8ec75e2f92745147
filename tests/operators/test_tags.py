from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest

from operators.changes import encode_change
from operators.events import Event
from operators.features import DAY_MS, user_digest
from operators.pending import PendingLabel, pack_pending, resolve, unpack_pending
from operators.pipeline import PipelineConfig, process_events
from operators.tags import (
    DEFAULT_TAGS,
    NO_PURCHASE_WITHIN,
    TagDefinition,
    TagModel,
    holds,
    parse_tags,
    tag_reason,
)

T0 = 1_767_225_600_000
VIP = TagDefinition("vip", "rule", feature="monetary", op=">", value=100.0)
CHURN = TagDefinition(
    "churn_risk",
    "predictive",
    label=NO_PURCHASE_WITHIN,
    horizon_days=10,
    enter=0.7,
    exit=0.5,
    features=("inactive_days",),
)
# p = sigmoid(2 * (log1p(inactive_days) - 1)): ~0.12 when active, > 0.7 after ~4 days idle.
CHURN_MODEL = TagModel("churn_risk", 1, ("inactive_days",), (1.0,), (1.0,), (2.0,), 0.0, True)
CONFIG = PipelineConfig(
    segment_features=("frequency",),
    train_sample_permille=1000,
    late_grace_ms=0,
    rescore_interval_ms=DAY_MS,
    tags=(VIP, CHURN),
)


def buy(n: int, day: float, amount: float = 60.0) -> Event:
    return Event(f"b{n}", "u1", "purchase", T0 + int(day * DAY_MS), amount)


def view(n: int, day: float, user: str = "clock") -> Event:
    return Event(f"v{n}", user, "view", T0 + int(day * DAY_MS))


def test_a_rule_tag_is_entered_with_a_change_event() -> None:
    out = process_events({}, [buy(1, 0), buy(2, 1)], None, CONFIG)
    entered = [c for c in out.changes if c.tags_added]
    assert [(c.event_id, c.tags_added) for c in entered] == [("b2", ("vip",))]
    assert entered[0].segment_before is None and entered[0].segment_after is None


def test_hysteresis_enters_high_and_leaves_only_below_exit() -> None:
    assert holds(CHURN, False, {"inactive_days": 1.0}, CHURN_MODEL)[0] is False
    score_mid = holds(CHURN, True, {"inactive_days": 2.5}, CHURN_MODEL)
    assert 0.5 < score_mid[1] < 0.7 and score_mid[0] is True  # stays: above exit
    assert holds(CHURN, False, {"inactive_days": 2.5}, CHURN_MODEL)[0] is False  # not entered
    assert holds(CHURN, True, {"inactive_days": 0.5}, CHURN_MODEL)[0] is False


def test_a_tag_without_a_ready_model_reports_no_score_and_keeps_membership() -> None:
    unready = TagModel("churn_risk", 1, ("inactive_days",), (1.0,), (1.0,), (2.0,), 0.0, False)
    assert holds(CHURN, True, {"inactive_days": 9.0}, unready) == (True, None)
    assert holds(CHURN, False, {"inactive_days": 9.0}, None) == (False, None)


def test_a_quiet_user_enters_churn_risk_by_re_scoring_and_raises_an_alert() -> None:
    events = [buy(1, 0)] + [view(d, d) for d in range(1, 9)]
    out = process_events({}, events, None, CONFIG, tag_models={"churn_risk": CHURN_MODEL})
    alerts = [(c.user_id, tag, c.event_id) for c, tag in out.alerts]
    assert alerts and alerts[0][:2] == ("u1", "churn_risk")
    assert alerts[0][2].startswith("rescore:")  # no event from u1: the sweep found it
    change = out.alerts[0][0]
    assert dict(change.tag_scores)["churn_risk"] >= 0.7
    assert dict(change.reason)["churn_risk"] == ("inactive_days",)  # what pushed the score up
    published = json.loads(encode_change(change, 0))
    assert published["reason"] == {"segment": [], "tags": {"churn_risk": ["inactive_days"]}}


def test_each_tag_keeps_the_event_time_it_was_entered_until_it_is_left() -> None:
    models = {"churn_risk": CHURN_MODEL}
    out = process_events(
        {},
        [buy(1, 0), buy(2, 1)] + [view(d, d) for d in range(2, 9)],
        None,
        CONFIG,
        tag_models=models,
    )
    by_tag = {t: c.event_time_ms for c in out.changes for t in c.tags_added}
    state = out.states["u1"]
    assert state.tags == 0b11
    assert state.tags_entered_s[:2] == (by_tag["vip"] // 1000, by_tag["churn_risk"] // 1000)
    assert by_tag["vip"] == T0 + DAY_MS and by_tag["churn_risk"] > by_tag["vip"]
    # A purchase keeps vip (entered earlier, still held) and leaves churn_risk: its time goes.
    later = process_events({"u1": state}, [buy(3, 9)], None, CONFIG, tag_models=models)
    again = later.states["u1"]
    assert again.tags == 0b01
    assert again.tags_entered_s[:2] == (state.tags_entered_s[0], 0)
    # Quiet again: churn_risk is entered anew, at the re-scoring that found it.
    quiet = process_events(
        {"u1": again},
        [view(d, d) for d in range(10, 18)],
        None,
        CONFIG,
        due_users=["u1"],  # from the due index, which the store keeps
        tag_models=models,
    )
    (entered,) = [c for c in quiet.changes if "churn_risk" in c.tags_added]
    assert quiet.states["u1"].tags_entered_s[1] == entered.event_time_ms // 1000


def test_the_reason_of_a_tag_names_the_features_that_pushed_the_score() -> None:
    model = TagModel(
        "churn_risk",
        1,
        ("inactive_days", "frequency"),
        (1.0, 1.0),
        (1.0, 1.0),
        (2.0, -1.0),
        0.0,
        True,
    )
    quiet_regular = {"inactive_days": 30.0, "frequency": 20.0}  # both above their means
    assert tag_reason(CHURN, True, quiet_regular, model) == ("inactive_days",)
    assert tag_reason(CHURN, False, quiet_regular, model) == ("frequency",)
    assert tag_reason(VIP, True, quiet_regular, None) == ("monetary",)


def test_labels_resolve_at_a_purchase_or_after_the_horizon() -> None:
    open_label = PendingLabel(1, T0, (1.25,))
    assert resolve(CHURN, open_label, T0 + 5 * DAY_MS, T0 + 5 * DAY_MS) == 0  # bought: no churn
    assert resolve(CHURN, open_label, None, T0 + 5 * DAY_MS) is None  # still open
    assert resolve(CHURN, open_label, None, T0 + 11 * DAY_MS) == 1  # horizon passed: churned
    assert resolve(CHURN, open_label, T0 + 11 * DAY_MS, T0 + 11 * DAY_MS) == 1  # too late
    settled = PendingLabel(1, T0, (1.25,), value=0)
    assert resolve(CHURN, settled, None, T0 + 11 * DAY_MS) == 0  # known early stays known


def test_labels_describe_the_user_at_each_grid_time_and_are_learned_after_the_horizon() -> None:
    every = 2 * DAY_MS
    config = replace(CONFIG, label_every_ms=every)
    buys = [buy(n, n / 2) for n in range(12)]  # twice a day for six days, then silence
    active = process_events({}, buys, None, config)
    quiet = process_events(
        active.states,
        [],
        None,
        config,
        watermark_ms=T0 + 40 * DAY_MS,
        due_users=["u1"],
        pending=active.open_labels,
    )  # 34 quiet days later
    churn = [label for label in active.labels + quiet.labels if label.tag == 1]
    times = [b.ts_ms for b in buys]
    phase = user_digest("u1") % (every // 60_000) * 60_000  # whole minutes
    # One label per grid interval, at the user's own phase, from day 0.5 until day 30 (a grid
    # time is labelled by a scoring within a day of it: the daily re-scoring of a quiet user).
    assert [label.at_ms for label in churn] == sorted({label.at_ms for label in churn})
    assert all((label.at_ms - phase) % every == 0 for label in churn)
    assert len(churn) >= (40 - 10 - 1) // 2 - 1
    for label in churn:
        # The features are those at the grid time, not at the scoring that opened the label,
        last = max(t for t in times if t <= label.at_ms)
        assert math.expm1(label.logs[0]) == pytest.approx(
            (label.at_ms - last) / DAY_MS, rel=2e-3, abs=1e-3
        )
        # the outcome is what followed within the 10-day horizon, learned once it has passed.
        bought = any(label.at_ms < t <= label.at_ms + 10 * DAY_MS for t in times)
        assert label.value == (0 if bought else 1)
        assert label.learned_ms > label.at_ms + 10 * DAY_MS
    assert {label.value for label in churn} == {0, 1}
    # Labels whose horizon is still running wait, settled or not, in the user's pending list.
    waiting = quiet.open_labels["u1"]
    assert waiting and all(p.at_ms + 10 * DAY_MS >= T0 + 40 * DAY_MS - DAY_MS for p in waiting)


def test_a_label_known_early_waits_for_its_horizon() -> None:
    config = replace(CONFIG, label_every_ms=DAY_MS)
    first = process_events({}, [buy(1, 0), buy(2, 1.5)], None, config)
    opened = [p for p in first.open_labels["u1"] if p.tag == 1]
    assert opened and opened[0].value == 0  # the purchase at day 1.5 settled it: no churn
    assert not [label for label in first.labels if label.tag == 1]  # but it is not learned yet


def test_pending_labels_round_trip_as_stored() -> None:
    labels = [
        PendingLabel(0, T0, (1.5, 2.25)),
        PendingLabel(3, T0 + 9 * 60_000, (0.0,), 1),
        PendingLabel(1, T0 + 60_000, (), 0),
    ]
    assert unpack_pending(pack_pending(labels)) == labels
    assert unpack_pending(b"") == []


def test_definitions_parse_and_bad_ones_are_refused() -> None:
    parsed = parse_tags('[{"name": "big", "kind": "rule", "feature": "monetary", "value": 5}]')
    assert parsed == (TagDefinition("big", "rule", feature="monetary", value=5),)
    for bad in (
        '{"name": "x"}',
        '[{"name": "x", "kind": "magic"}]',
        '[{"name": "x", "kind": "rule", "feature": "nope"}]',
        '[{"name": "x", "kind": "predictive", "label": "purchase_within"}]',
        '[{"name": "x", "kind": "rule", "feature": "monetary", "colour": 1}]',
    ):
        with pytest.raises(ValueError):
            parse_tags(bad)
    assert {t.name for t in DEFAULT_TAGS} == {"churn_risk", "likely_buyer", "vip"}


def test_the_model_scores_as_documented() -> None:
    from operators.tags import predict_one

    p = predict_one(CHURN_MODEL, {"inactive_days": 4.0})
    assert p == pytest.approx(1 / (1 + math.exp(-2 * (math.log1p(4.0) - 1))))
