"""End to end: `segstream erase` against `segstream serve` on real Kafka and Redis."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stream.generator import encode, generate_events
from tests.support.servers import end_offsets, publish, read_topic, redis_client
from tests.support.service import Service

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


@pytest.fixture
def client() -> redis.Redis:
    return redis_client()


@pytest.fixture
def service(tmp_path: Path, client: redis.Redis) -> Iterator[Service]:
    svc = Service(
        tmp_path,
        SEGSTREAM_MAX_BATCH_RECORDS="500",
        SEGSTREAM_SNAPSHOT_EVERY_SAMPLES="300",
        SEGSTREAM_TRAIN_SAMPLE_PERMILLE="1000",
    )
    yield svc
    svc.cleanup(client)


def test_an_erased_user_is_gone_everywhere_audited_and_may_come_back(
    service: Service, client: redis.Redis
) -> None:
    events = list(itertools.islice(generate_events(300, seed=4, days=30), 4000))
    publish(service.input_topic, [encode(e) for e in events])
    service.start()
    service.wait_for_offsets(client, end_offsets(service.input_topic))
    before = service.states(client)
    user = max((u for u, s in before.items() if s.segment >= 0), key=lambda u: before[u].seq)

    erased = subprocess.run(
        [sys.executable, "-m", "stream", "erase", user, "--by", "dpo@example.com"],
        env=service.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    erase_id = erased.split(":")[0]
    service.wait_for_offsets(client, end_offsets(service.input_topic))

    # The record, its due entry and labels are gone; the segment sizes count the others.
    after = service.states(client)
    assert user not in after and set(after) == set(before) - {user}
    tag = f"{service.prefix}:{{{service.input_topic}-*}}"
    for key in client.scan_iter(f"{tag}:due"):
        assert client.zscore(key, user) is None
    for key in client.scan_iter(f"{tag}:labels"):
        assert client.hget(key, user) is None
    sizes: Counter[int] = Counter()
    for key in client.scan_iter(f"{tag}:segments"):
        sizes.update({int(s): int(n) for s, n in client.hgetall(key).items()})
    placed = Counter(s.segment for s in after.values() if s.segment >= 0)
    assert +sizes == placed

    # A user_erased event on the change topic, a tombstone on the membership topic.
    changes = [json.loads(v) for k, v in read_topic(service.output_topic) if k == user.encode()]
    assert changes[-1]["kind"] == "user_erased" and changes[-1]["event_id"] == erase_id
    assert changes[-1]["segment_before"] == before[user].segment
    assert changes[-1]["seq"] == before[user].seq + 1
    membership = [v for k, v in read_topic(service.membership_topic) if k == user.encode()]
    assert membership[-1] is None

    # The audit says who, when and how, and nothing of the user.
    audit = [e for key in client.scan_iter(f"{tag}:erasures") for e in client.lrange(key, 0, -1)]
    assert len(audit) == 1 and user.encode() not in audit[0]
    entry = json.loads(audit[0])
    assert (entry["erase_id"], entry["requested_by"], entry["via"], entry["found"]) == (
        erase_id,
        "dpo@example.com",
        "cli",
        True,
    )
    port = service.http_port()
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    assert 'segstream_users_removed_total{reason="erased"} 1.0' in metrics

    # An event after the erasure starts a new user.
    last_ts = max(int(e["ts"]) for e in events)
    came_back = {"event_id": "back-1", "user_id": user, "type": "view", "ts": last_ts}
    publish(service.input_topic, [(user.encode(), json.dumps(came_back).encode())])
    service.wait_for_offsets(client, end_offsets(service.input_topic))
    again = service.states(client)[user]
    assert (again.events_total, again.first_seen_ms) == (1, last_ts)
