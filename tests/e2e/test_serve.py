"""End to end: `segstream serve` on real Kafka and Redis, fed by a real producer."""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import sys
import urllib.request

import pytest
import redis

from operators.decoding import decode_event
from operators.events import Rejected
from operators.features import FEATURES
from stream.feeds.simulator import MALFORMED, encode, generate_events
from tests.e2e.conftest import Services
from tests.support.events import expected_states, features_only
from tests.support.servers import (
    end_offsets,
    publish,
    read_topic,
    topic_config,
)
from tests.support.service import Service

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


@pytest.fixture
def service(services: Services) -> Service:
    return services.new(SEGSTREAM_MAX_BATCH_RECORDS="500", SEGSTREAM_SNAPSHOT_EVERY_SAMPLES="500")


def test_serve_processes_every_event_once_and_dead_letters_the_rest(
    service: Service,
    client: redis.Redis,
) -> None:
    events = list(itertools.islice(generate_events(1000, seed=11, days=60), 10_000))
    messages = [encode(e) for e in events]
    # Producer retries redeliver a message right after itself: 50 such duplicates.
    for i in range(50):
        messages.insert(i * 150 + 1, messages[i * 150])
    bad = [(b"u", MALFORMED[i % len(MALFORMED)]) for i in range(45)]
    for i, message in enumerate(bad):
        messages.insert(i * 200 + 7, message)
    publish(service.input_topic, messages)

    service.start()
    ends = end_offsets(service.input_topic)
    service.wait_for_offsets(client, ends)

    # Every valid event is in its user's state exactly once.
    expected = expected_states(json.loads(v) for k, v in messages if k != b"u")
    got = service.states(client)
    assert len(got) == len(expected) >= 800
    assert {u: features_only(s) for u, s in got.items()} == {
        u: features_only(s) for u, s in expected.items()
    }
    assert sum(s.events_total for s in got.values()) == 10_000

    # Every malformed message is in the DLQ, with its reason and its original bytes.
    dead = [json.loads(v) for _, v in read_topic(service.dlq_topic)]
    assert len(dead) == 45
    for record in dead:
        original = base64.b64decode(record["value_base64"])
        rejected = decode_event(b"u", original)
        assert isinstance(rejected, Rejected) and record["reason"] == rejected.reason
        assert record["detail"] == rejected.detail and record["topic"] == service.input_topic

    # Change events reach the output topic, keyed by user; segment lineage keyed by segment.
    published = [(k, json.loads(v)) for k, v in read_topic(service.output_topic)]
    changes = [(k, d) for k, d in published if d["kind"] == "user_changed"]
    lineage = [(k, d) for k, d in published if d["kind"] != "user_changed"]
    assert len(changes) >= 1000
    assert lineage and all(k == f"segment:{d['segment']}".encode() for k, d in lineage)
    assert {d["kind"] for _, d in lineage} >= {"segment_created"}
    docs = [d for _, d in changes]
    assert all(k == d["user_id"].encode() for k, d in changes)
    assert {d["user_id"] for d in docs} <= set(expected)
    last_seq: dict[str, int] = {}
    for doc in docs:
        last_seq[doc["user_id"]] = max(last_seq.get(doc["user_id"], 0), doc["seq"])
    assert all(got[u].seq == seq for u, seq in last_seq.items())

    # The compacted membership topic, read from the start, is every placed user's state.
    latest = {}
    for key, value in read_topic(service.membership_topic):
        document = json.loads(value)
        assert key == document["user_id"].encode()
        latest[document["user_id"]] = (document["segment"], document["seq"])
    assert latest == {
        u: (None if s.segment < 0 else s.segment, s.seq) for u, s in got.items() if s.seq
    }
    assert topic_config(service.membership_topic)["cleanup.policy"] == "compact"

    # `segstream inspect` reads a user's state back as operators see it.
    user = max(got, key=lambda u: got[u].seq)
    shown = subprocess.run(
        [sys.executable, "-m", "stream", "inspect", user],
        env=service.env,
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    doc = json.loads(shown)
    assert (doc["user_id"], doc["seq"], doc["last_event_ms"]) == (
        user,
        got[user].seq,
        got[user].last_seen_ms,
    )
    assert doc["features"]["events"] == got[user].events_total
    assert doc["segment"] is None or doc["segment"]["id"] == got[user].segment
    assert len(doc["features"]) == len(FEATURES)
    missing = subprocess.run(
        [sys.executable, "-m", "stream", "inspect", "nobody"], env=service.env, capture_output=True
    )
    assert missing.returncode == 1

    # Metrics and health, then a clean stop on SIGTERM.
    port = service.http_port()
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    processed = sum(
        float(line.split()[-1])
        for line in metrics.splitlines()
        if line.startswith("segstream_events_processed_total{")
    )
    assert processed == 10_000
    assert 'segstream_events_dead_lettered_total{reason="not_json"} 10.0' in metrics
    assert "segstream_events_duplicate_total 50.0" in metrics
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").status == 200
    assert service.terminate() == 0
    assert "stopped after" in service.log()
