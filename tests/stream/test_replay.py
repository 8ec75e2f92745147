"""``segstream replay``: a history file through the real loop, in memory or on Kafka + Redis."""

from __future__ import annotations

import json

import pytest

from stream.cli import main
from tests.support.data import rees46_sample_path
from tests.support.servers import REDIS_URL, create_topics, read_topic, redis_client, unique


def test_replays_a_clickstream_in_memory_with_a_progress_bar(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["replay", str(rees46_sample_path()), "--preset", "rees46"])
    captured = capsys.readouterr()
    assert code == 0
    assert "1,000/1,000 events (100%)" in captured.err
    assert "replayed 1,000 events" in captured.out


def test_a_bad_mapping_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", str(rees46_sample_path()), "--user-column", "who",
                 "--time-column", "event_time"])
    assert code == 2
    assert "no column who" in capsys.readouterr().err


@pytest.mark.kafka
def test_replays_into_kafka_and_redis(monkeypatch: pytest.MonkeyPatch) -> None:
    client = redis_client()
    topics = {name: unique(name) for name in ("events", "changes", "dlq", "late", "alerts")}
    create_topics(*topics.values(), partitions=2)
    prefix = unique("replay")
    for name, value in {
        "SEGSTREAM_INPUT_TOPIC": topics["events"], "SEGSTREAM_OUTPUT_TOPIC": topics["changes"],
        "SEGSTREAM_DLQ_TOPIC": topics["dlq"], "SEGSTREAM_LATE_TOPIC": topics["late"],
        "SEGSTREAM_ALERT_TOPIC": topics["alerts"],
        "SEGSTREAM_KEY_PREFIX": prefix, "SEGSTREAM_REDIS_URL": REDIS_URL,
        "SEGSTREAM_GROUP": unique("group"), "SEGSTREAM_SNAPSHOT_EVERY_SAMPLES": "200",
        "SEGSTREAM_TRAIN_SAMPLE_PERMILLE": "1000",
    }.items():
        monkeypatch.setenv(name, value)
    try:
        assert main(["replay", str(rees46_sample_path()), "--preset", "rees46", "--kafka"]) == 0
        assert len(read_topic(topics["events"])) == 1000
        offsets = [client.get(f"{prefix}:{{{topics['events']}-{i}}}:offset") for i in (0, 1)]
        assert sum(int(o or 0) for o in offsets) == 1000
        users = list(client.scan_iter(f"{prefix}:*:u:*"))
        assert len(users) == 330
        published = [json.loads(v) for _, v in read_topic(topics["changes"])]
        assert any(d["kind"] == "user_changed" for d in published)
    finally:
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
