"""Crash tests: kill -9 `segstream serve` mid-stream, restart it, and compare the final state
with an uninterrupted run: nothing lost, nothing counted twice."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stream.failpoints import STAGES
from stream.generator import encode, generate_events
from tests.support.events import expected_states, features_only
from tests.support.servers import end_offsets, ordered_producer, redis_client
from tests.support.service import Service

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
EVENTS = list(itertools.islice(generate_events(400, seed=5, days=60), 4000))
EXPECTED = {u: features_only(s) for u, s in expected_states(EVENTS).items()}


@pytest.fixture
def client() -> redis.Redis:
    return redis_client()


@pytest.fixture
def service(tmp_path: Path, client: redis.Redis) -> Iterator[Service]:
    svc = Service(tmp_path, SEGSTREAM_MAX_BATCH_RECORDS="200",
                  SEGSTREAM_SNAPSHOT_EVERY_SAMPLES="500")
    producer = ordered_producer()
    for event in EVENTS:
        key, value = encode(event)
        producer.send(svc.input_topic, key=key, value=value)
    producer.flush()
    producer.close()
    yield svc
    svc.cleanup(client)


def assert_matches_uninterrupted_run(service: Service, client: redis.Redis) -> None:
    service.wait_for_offsets(client, end_offsets(service.input_topic))
    got = {u: features_only(s) for u, s in service.states(client).items()}
    assert got == EXPECTED
    assert service.terminate() == 0


@pytest.mark.parametrize("stage", STAGES)
def test_a_kill_at_each_step_of_a_batch_loses_and_doubles_nothing(
    service: Service, client: redis.Redis, stage: str,
) -> None:
    service.start(SEGSTREAM_FAILPOINT=f"{stage}:4")
    assert service.wait_exit(timeout_s=120) == -9
    progress = sum(service.offsets(client).values())
    assert 0 < progress < len(EVENTS)  # it died mid-stream
    service.start()
    assert_matches_uninterrupted_run(service, client)


def test_kill_9_at_an_arbitrary_moment(service: Service, client: redis.Redis) -> None:
    service.start(SEGSTREAM_MAX_BATCH_RECORDS="50")
    deadline = time.monotonic() + 120
    while sum(service.offsets(client).values()) < len(EVENTS) // 4:
        assert time.monotonic() < deadline, service.log()
        time.sleep(0.01)
    service.kill()
    assert sum(service.offsets(client).values()) < len(EVENTS)
    service.start()
    assert_matches_uninterrupted_run(service, client)
