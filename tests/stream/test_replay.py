"""``segstream replay``: a history file through the real loop, in memory or on Kafka + Redis."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from stream.cli.main import main
from stream.feeds.simulator import generate_events
from stream.redis.state_store import RedisStateStore
from stream.replay import replay_events
from stream.settings import Settings
from tests.support.data import rees46_sample_path
from tests.support.servers import REDIS_URL, create_topics, read_topic, redis_client, unique
from tests.support.state import partition_users


def test_replays_a_clickstream_in_memory_with_a_progress_bar(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["replay", str(rees46_sample_path()), "--preset", "rees46"])
    captured = capsys.readouterr()
    assert code == 0
    assert "1,000/1,000 events (100%)" in captured.err
    assert "replayed 1,000 events" in captured.out


def test_a_bad_mapping_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["replay", str(rees46_sample_path()), "--user-column", "who", "--time-column", "event_time"]
    )
    assert code == 2
    assert "no column who" in capsys.readouterr().err


@pytest.mark.kafka
def test_replays_into_kafka_and_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    client = redis_client()
    topics = {name: unique(name) for name in ("events", "changes", "dlq", "late", "alerts")}
    create_topics(*topics.values(), partitions=2)
    prefix = unique("replay")
    for name, value in {
        "SEGSTREAM_INPUT_TOPIC": topics["events"],
        "SEGSTREAM_OUTPUT_TOPIC": topics["changes"],
        "SEGSTREAM_DLQ_TOPIC": topics["dlq"],
        "SEGSTREAM_LATE_TOPIC": topics["late"],
        "SEGSTREAM_ALERT_TOPIC": topics["alerts"],
        "SEGSTREAM_KEY_PREFIX": prefix,
        "SEGSTREAM_REDIS_URL": REDIS_URL,
        "SEGSTREAM_GROUP": unique("group"),
        "SEGSTREAM_SNAPSHOT_EVERY_SAMPLES": "200",
        "SEGSTREAM_TRAIN_SAMPLE_PERMILLE": "1000",
    }.items():
        monkeypatch.setenv(name, value)
    try:
        assert main(["replay", str(rees46_sample_path()), "--preset", "rees46", "--kafka"]) == 0
        assert len(read_topic(topics["events"])) == 1000
        offsets = [client.get(f"{prefix}:{{{topics['events']}-{i}}}:offset") for i in (0, 1)]
        assert sum(int(o or 0) for o in offsets) == 1000
        store = RedisStateStore(client, prefix)
        users = {
            user
            for partition in store.saved_partitions(topics["events"])
            for user in partition_users(store, partition)
        }
        assert len(users) == 330
        published = [json.loads(v) for _, v in read_topic(topics["changes"])]
        assert any(d["kind"] == "user_changed" for d in published)
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)


def history(path: Path, year: int, users: int = 80) -> Path:
    rows = ["customer,when,amount"]
    for n in range(users * 5):
        rows.append(f"c{n % users},{year}-0{1 + n % 9}-1{n % 10} 10:00:00,{5 + n % 40}.50")
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_history_from_the_1990s_replays_and_the_dead_letters_are_counted(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mapping = ["--user-column", "customer", "--time-column", "when", "--amount-column", "amount"]
    code = main(["replay", str(history(tmp_path / "old.csv", 1994)), *mapping])
    out = capsys.readouterr().out
    assert code == 0 and "400 valid, 0 dead-lettered (none)" in out
    code = main(["replay", str(history(tmp_path / "older.csv", 1975)), *mapping])
    captured = capsys.readouterr()
    assert code == 1
    assert "0 valid, 400 dead-lettered (bad_timestamp: 400)" in captured.out
    assert "SEGSTREAM_MIN_EVENT_TIME" in captured.err


def test_evaluate_explains_why_too_few_users_remain(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        [
            "evaluate",
            "--input",
            str(history(tmp_path / "older.csv", 1975)),
            "--user-column",
            "customer",
            "--time-column",
            "when",
            "--amount-column",
            "amount",
            "--out",
            str(tmp_path / "eval"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "only 0 users with a valid purchase remain" in err
    assert "bad_timestamp: 400" in err and "Traceback" not in err


def test_a_replay_holds_only_the_outputs_it_is_asked_to_keep() -> None:
    """The in-memory replay of a history keeps the outputs ``keep_output`` names; the others
    keep their offsets and read as tombstones, and the stream's answers do not change."""
    events = list(itertools.islice(generate_events(40, seed=3), 2000))
    settings = Settings(tags="[]", train_sample_permille=1000, snapshot_every_samples=300)
    full = replay_events(settings, events)
    lean = replay_events(settings, events, keep_output=lambda topic, value: False)
    assert full.parts.state_store.users() == lean.parts.state_store.users()  # type: ignore[attr-defined]
    for topic in (settings.output_topic, settings.membership_topic):
        kept = full.parts.sink.broker.records(topic)  # type: ignore[attr-defined]
        dropped = lean.parts.sink.broker.records(topic)  # type: ignore[attr-defined]
        assert kept and [r.offset for r in kept] == [r.offset for r in dropped]
        assert all(r.value is None for r in dropped)
    assert lean.parts.sink.broker.records(settings.input_topic)  # type: ignore[attr-defined]
