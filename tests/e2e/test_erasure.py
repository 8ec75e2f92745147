"""End to end: `segstream erase` against `segstream serve` on real Kafka and Redis."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
import redis
from kafka.partitioner.default import murmur2

from stream.feeds.simulator import encode, generate_events
from stream.ports import Partition
from stream.redis.state_store import RedisStateStore
from tests.e2e.conftest import Services
from tests.support.api import TOKEN, start_api
from tests.support.servers import (
    KAFKA_BOOTSTRAP,
    end_offsets,
    ordered_producer,
    publish,
    read_topic,
)
from tests.support.service import Service
from tests.support.state import partition_labels

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


@pytest.fixture
def service(services: Services) -> Service:
    return services.new(
        SEGSTREAM_MAX_BATCH_RECORDS="500",
        SEGSTREAM_SNAPSHOT_EVERY_SAMPLES="300",
        SEGSTREAM_TRAIN_SAMPLE_PERMILLE="1000",
        SEGSTREAM_LATE_GRACE_S=str(30 * 86_400),
    )


def test_an_erased_user_is_gone_everywhere_audited_and_may_come_back(
    service: Service, client: redis.Redis
) -> None:
    events = list(itertools.islice(generate_events(300, seed=4, days=30), 4000))
    publish(service.input_topic, [encode(e) for e in events])
    service.start()
    service.wait_for_offsets(client, end_offsets(service.input_topic))
    before = service.states(client)
    user = max((u for u, s in before.items() if s.segment >= 0), key=lambda u: before[u].seq)

    erase_id = erase_with_cli(service, user)
    service.wait_for_offsets(client, end_offsets(service.input_topic))

    # The record, its due entry and labels are gone; the segment sizes count the others.
    after = service.states(client)
    assert user not in after and set(after) == set(before) - {user}
    store = RedisStateStore(client, service.prefix)
    for partition in store.saved_partitions(service.input_topic):
        assert user not in partition_labels(client, store, partition)
    tag = f"{service.prefix}:{{{service.input_topic}-*}}"
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

    # The audit says who, when and how, and nothing of the user: every partition audits the
    # request, and the one that held the user found it.
    audit = [e for key in client.scan_iter(f"{tag}:erasures") for e in client.lrange(key, 0, -1)]
    assert len(audit) == 4 and not any(user.encode() in entry for entry in audit)
    entries = [json.loads(entry) for entry in audit]
    assert sorted(e["found"] for e in entries) == [False, False, False, True]
    assert {(e["erase_id"], e["requested_by"], e["via"]) for e in entries} == {
        (erase_id, "dpo@example.com", "cli")
    }
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


def test_an_erasure_finds_users_whatever_partitioner_their_producer_used(
    service: Service, client: redis.Redis, tmp_path: Path
) -> None:
    """Events from confluent-kafka's default partitioner (librdkafka's CRC32) and from
    kafka-python (Java's murmur2); erasures through the API and the CLI reach both."""
    from confluent_kafka import Producer

    events = list(itertools.islice(generate_events(200, seed=12, days=30), 5000))
    users = sorted({e["user_id"] for e in events})
    by_librdkafka = set(users[::2])
    librdkafka = Producer({"bootstrap.servers": KAFKA_BOOTSTRAP, "enable.idempotence": True})
    java_like = ordered_producer()
    # In event time order, a chunk at a time (two producers may interleave within a chunk;
    # the grace below keeps that from making events late).
    for start in range(0, len(events), 200):
        for event in events[start : start + 200]:
            key, value = encode(event)
            if event["user_id"] in by_librdkafka:
                librdkafka.produce(service.input_topic, value, key)
            else:
                java_like.send(service.input_topic, key=key, value=value)
        assert librdkafka.flush(30) == 0
        java_like.flush()
    java_like.close()
    service.start()
    service.wait_for_offsets(client, end_offsets(service.input_topic))
    states = service.states(client)
    placed = partitions_of(client, service, users)
    # The two partitioners disagree on most users: those are the ones erasure used to miss.
    elsewhere = sorted(u for u in by_librdkafka if placed[u] != murmur2_partition(u, 4))
    assert len(elsewhere) >= 40, len(elsewhere)
    java_users = sorted(set(users) - by_librdkafka)
    via_api, via_cli = elsewhere[:4] + java_users[:4], elsewhere[4:7] + java_users[4:7]

    api = start_api(service, tmp_path / "api.log")
    try:
        ids = {}
        for user in via_api:
            assert api.call("GET", f"/v1/users/{user}")[0] == 200
            status, _, body = api.call("DELETE", f"/v1/users/{user}", token=TOKEN)
            assert status == 202, body
            ids[user] = body["erase_id"]
        for user in via_cli:
            ids[user] = erase_with_cli(service, user)
        service.wait_for_offsets(client, end_offsets(service.input_topic))

        for user in ids:
            assert api.call("GET", f"/v1/users/{user}")[0] == 404, user
    finally:
        api.process.terminate()
        api.process.wait(timeout=30)

    changes = [json.loads(v) for _, v in read_topic(service.output_topic)]
    erased_events = {c["user_id"]: c for c in changes if c["kind"] == "user_erased"}
    assert set(erased_events) == set(ids)  # once each: other partitions only audit
    for user, erase_id in ids.items():
        said = erased_events[user]
        assert (said["event_id"], said["found"], said["seq"]) == (
            erase_id,
            True,
            states[user].seq + 1,
        )
    membership: dict[bytes, bytes | None] = {}
    for key, value in read_topic(service.membership_topic):
        assert key is not None
        membership[key] = value
    assert all(membership[user.encode()] is None for user in ids)

    # Nothing is left under the erased users in Redis; every other user is as it was.
    after = service.states(client)
    assert set(after) == set(states) - set(ids)
    for key in client.scan_iter(f"{service.prefix}:*", count=1000):
        assert not any(user.encode() in key for user in ids), key
        kind = client.type(key)
        for user in ids:
            if kind == b"zset":
                assert client.zscore(key, user) is None, (key, user)
            elif kind == b"hash":
                assert client.hget(key, user) is None, (key, user)
    # Every partition audited every request; the one that held the user found it.
    tag = f"{service.prefix}:{{{service.input_topic}-"
    audits = {
        p: [json.loads(e) for e in client.lrange(f"{tag}{p}}}:erasures", 0, -1)] for p in range(4)
    }
    for user, erase_id in ids.items():
        found = {
            p: [e["found"] for e in audit if e["erase_id"] == erase_id]
            for p, audit in audits.items()
        }
        assert found == {p: [p == placed[user]] for p in range(4)}, (user, found)


def erase_with_cli(service: Service, user: str) -> str:
    """``segstream erase USER``; the request's id, once Kafka acknowledged it."""
    printed = subprocess.run(
        [sys.executable, "-m", "stream", "erase", user, "--by", "dpo@example.com"],
        env=service.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return printed.split(":")[0]


def partitions_of(client: redis.Redis, service: Service, users: list[str]) -> dict[str, int]:
    """Where each user's record is: the partition whose owner keeps it."""
    store = RedisStateStore(client, service.prefix)
    partitions = [Partition(service.input_topic, p) for p in range(4)]
    where = {}
    for user in users:
        found = store.find_user(partitions, user)
        if found is not None:
            where[user] = found[0].index
    return where


def murmur2_partition(user: str, partitions: int) -> int:
    """Where Java's (and kafka-python's) default partitioner puts the key."""
    return (murmur2(user.encode()) & 0x7FFFFFFF) % partitions
