"""Two consumers in one group share the partitions; when one dies, the other takes over
its partitions from the offsets in Redis, and the final state is still exact."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from stream.feeds.simulator import encode, generate_events
from tests.support.events import expected_states, features_only
from tests.support.servers import end_offsets, ordered_producer, redis_client
from tests.support.service import Service

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


def assigned_partitions(log: str) -> set[int]:
    """Partitions named in the service's latest 'assigned' log line."""
    lines = [line for line in log.splitlines() if " assigned [" in line]
    return {int(n) for n in re.findall(r"-(\d+)'", lines[-1])} if lines else set()


def test_a_surviving_consumer_takes_over_and_nothing_is_lost(tmp_path: Path) -> None:
    client: redis.Redis = redis_client()
    # A lease longer than the test: whoever takes it first keeps it.
    svc = Service(tmp_path, SEGSTREAM_MAX_BATCH_RECORDS="50", SEGSTREAM_TRAINER_LEASE_S="600")
    first_log = tmp_path / "first.log"
    first = subprocess.Popen(
        [sys.executable, "-m", "stream", "serve"],
        env=svc.env,
        stdout=subprocess.DEVNULL,
        stderr=first_log.open("wb"),
    )
    try:
        svc.start()  # the second consumer, same group
        deadline = time.monotonic() + 60
        while True:
            first_has = assigned_partitions(first_log.read_text())
            second_has = assigned_partitions(svc.log())
            if first_has and second_has and not first_has & second_has:
                break
            assert time.monotonic() < deadline, "the two consumers never split the partitions"
            time.sleep(0.1)

        events = list(itertools.islice(generate_events(300, seed=9, days=60), 6000))
        producer = ordered_producer()
        for event in events:
            key, value = encode(event)
            producer.send(svc.input_topic, key=key, value=value)
        producer.flush()
        producer.close()
        while sum(svc.offsets(client).values()) < len(events) // 5:
            assert time.monotonic() < deadline + 60, svc.log()
            time.sleep(0.01)
        first.kill()  # dies mid-stream, holding its partitions
        first.wait(timeout=30)

        svc.wait_for_offsets(client, end_offsets(svc.input_topic))
        assert assigned_partitions(svc.log()) == {0, 1, 2, 3}
        got = {u: features_only(s) for u, s in svc.states(client).items()}
        assert got == {u: features_only(s) for u, s in expected_states(events).items()}
        # Both consumers processed batches; exactly one of them trained.
        trainers = [
            log for log in (first_log.read_text(), svc.log()) if "took the trainer lease" in log
        ]
        assert len(trainers) == 1
        assert svc.terminate() == 0
    finally:
        if first.poll() is None:
            first.kill()
        svc.cleanup(client)
