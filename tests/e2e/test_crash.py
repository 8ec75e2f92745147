"""Crash tests: kill -9 `segstream serve` mid-stream, restart it, and compare the final state
with an uninterrupted run's: every user's features, segment, tags and seq, the due index, the
open labels, the segment sizes and the change events. Nothing lost, nothing counted twice.

The model is fixed (a published model file, training off) so both runs score alike; the
chaos suite (tests/chaos) does the same with random kills, rebalances and restarts.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from stream.feeds.simulator import generate_events
from stream.loop.failpoints import STAGES
from tests.e2e.conftest import Services
from tests.support.events import expected_states, features_only
from tests.support.model import frozen_service, trained_model
from tests.support.servers import end_offsets, redis_client
from tests.support.service import Service
from tests.support.state import PartitionState, change_ids, differences, stored_state

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
EVENTS = list(itertools.islice(generate_events(400, seed=5, days=60), 4000))
BATCH = {"SEGSTREAM_MAX_BATCH_RECORDS": "200"}


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "model.json"
    trained_model(itertools.islice(generate_events(300, seed=3, days=40), 10_000), path)
    return path


@pytest.fixture(scope="module")
def calm(
    model_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[dict[int, PartitionState], set[str]]]:
    """The uninterrupted run: its stored state and its change ids."""
    client = redis_client()
    service = frozen_service(tmp_path_factory.mktemp("calm") / "logs", model_file, EVENTS, **BATCH)
    try:
        service.start()
        service.wait_for_offsets(client, end_offsets(service.input_topic))
        assert service.terminate() == 0
        state = stored_state(client, service.prefix, service.input_topic)
        assert {u: features_only(s) for p in state.values() for u, s in p.users.items()} == {
            u: features_only(s) for u, s in expected_states(EVENTS).items()
        }
        yield state, set(change_ids(service.output_topic)[0])
    finally:
        service.cleanup(client)


@pytest.fixture
def service(tmp_path: Path, services: Services, model_file: Path) -> Service:
    return services.adopt(frozen_service(tmp_path / "logs", model_file, EVENTS, **BATCH))


def assert_matches_uninterrupted_run(
    service: Service,
    client: redis.Redis,
    calm: tuple[dict[int, PartitionState], set[str]],
) -> None:
    service.wait_for_offsets(client, end_offsets(service.input_topic))
    assert service.terminate() == 0
    expected, expected_ids = calm
    assert differences(expected, stored_state(client, service.prefix, service.input_topic)) == []
    assert set(change_ids(service.output_topic)[0]) == expected_ids


@pytest.mark.parametrize("stage", STAGES)
def test_a_kill_at_each_step_of_a_batch_loses_and_doubles_nothing(
    service: Service,
    client: redis.Redis,
    stage: str,
    calm: tuple[dict[int, PartitionState], set[str]],
) -> None:
    service.start(SEGSTREAM_FAILPOINT=f"{stage}:4")
    assert service.wait_exit(timeout_s=120) == -9
    progress = sum(service.offsets(client).values())
    assert 0 < progress < len(EVENTS)  # it died mid-stream
    service.start()
    assert_matches_uninterrupted_run(service, client, calm)


def test_kill_9_at_an_arbitrary_moment(
    service: Service,
    client: redis.Redis,
    calm: tuple[dict[int, PartitionState], set[str]],
) -> None:
    service.start(SEGSTREAM_MAX_BATCH_RECORDS="50")
    deadline = time.monotonic() + 120
    while sum(service.offsets(client).values()) < len(EVENTS) // 4:
        assert time.monotonic() < deadline, service.log()
        time.sleep(0.01)
    service.kill()
    assert sum(service.offsets(client).values()) < len(EVENTS)
    service.start()
    assert_matches_uninterrupted_run(service, client, calm)
