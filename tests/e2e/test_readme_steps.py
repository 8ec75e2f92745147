"""The README's "Run it on Kafka and Redis" steps, as written, with one `segstream serve` and
with two in one group: a new deployment puts users in segments within minutes, and a second
`segstream produce` tops the stream up instead of sending late events."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from operators.record import unpack_state
from stream.redis.state_store import RedisStateStore
from tests.support.servers import (
    KAFKA_BOOTSTRAP,
    REDIS_URL,
    end_offsets,
    read_topic,
    redis_client,
    unique,
)
from tests.support.service import stored_offsets
from tests.support.state import partition_users

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
SEGSTREAM = str(Path(sys.executable).with_name("segstream"))  # .venv/bin/segstream
USERS = 2000


def readme_environment() -> dict[str, str]:
    """The README's defaults, but on topics, keys and a group of this test's own."""
    topics = ("INPUT", "OUTPUT", "DLQ", "LATE", "ALERT", "MEMBERSHIP")
    return {
        **os.environ,
        "SEGSTREAM_KAFKA_BOOTSTRAP": KAFKA_BOOTSTRAP,
        "SEGSTREAM_REDIS_URL": REDIS_URL,
        **{f"SEGSTREAM_{t}_TOPIC": unique(t.lower()) for t in topics},
        "SEGSTREAM_GROUP": unique("group"),
        "SEGSTREAM_KEY_PREFIX": unique("readme"),
        "SEGSTREAM_HTTP_PORT": "0",  # two processes on one machine: a free port each
    }


def run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([SEGSTREAM, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def offsets(client: redis.Redis, env: dict[str, str]) -> dict[int, int]:
    return stored_offsets(client, env["SEGSTREAM_KEY_PREFIX"], env["SEGSTREAM_INPUT_TOPIC"])


def wait_caught_up(
    client: redis.Redis,
    env: dict[str, str],
    serves: list[subprocess.Popen[bytes]],
    logs: list[Path],
) -> None:
    wanted = {p: e for p, e in end_offsets(env["SEGSTREAM_INPUT_TOPIC"]).items() if e}
    deadline = time.monotonic() + 300
    while offsets(client, env) != wanted:
        for serve, log in zip(serves, logs, strict=True):
            assert serve.poll() is None, log.read_text()
        assert time.monotonic() < deadline, (offsets(client, env), wanted)
        time.sleep(0.2)


def metric(logs: list[Path], name: str) -> float:
    """``name`` summed over every serve process's /metrics."""
    total = 0.0
    for log in logs:
        port = re.search(r"metrics on :(\d+)", log.read_text()).group(1)  # type: ignore[union-attr]
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        total += sum(
            float(line.rsplit(" ", 1)[1])
            for line in body.splitlines()
            if line.startswith(name) and not line.startswith("#")
        )
    return total


def owned(log: Path) -> set[str]:
    """The partitions a serve process holds now, from its log's assigned and revoked lines."""
    held: set[str] = set()
    for what, partitions in re.findall(r"(assigned|revoked) \[([^\]]*)\]", log.read_text()):
        names = set(re.findall(r"'([^']+)'", partitions))
        held = held | names if what == "assigned" else held - names
    return held


def placed_users(client: redis.Redis, prefix: str, topic: str) -> int:
    """Users in a segment; every one of the ``USERS`` must have a record."""
    store = RedisStateStore(client, prefix)
    states = [
        unpack_state(record)
        for partition in store.saved_partitions(topic)
        for record in partition_users(store, partition).values()
    ]
    assert len(states) == USERS
    return sum(s.segment >= 0 for s in states)


@pytest.mark.parametrize(
    ("processes", "window"),
    [
        (1, ()),
        (2, ()),
        # A live stream: an hour of events ending now, too few samples for the warm-up.
        (2, ("--days", "0.04", "--start", "now")),
    ],
    ids=["one-process", "two-processes", "two-processes-live"],
)
def test_the_readme_steps_put_users_in_segments(
    processes: int, window: tuple[str, ...], tmp_path: Path
) -> None:
    client = redis_client()
    env = readme_environment()
    if window:  # the first model comes after this wait, not after the warm-up's samples
        env["SEGSTREAM_FIRST_MODEL_WAIT_S"] = "5"
    prefix = env["SEGSTREAM_KEY_PREFIX"]
    assert "created" in run(env, "create-topics")
    logs = [tmp_path / f"serve-{i}.log" for i in range(processes)]
    serves = [
        subprocess.Popen(
            [SEGSTREAM, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb")
        )
        for log in logs
    ]
    try:
        # The group settled before the events come, as in the README's order: with two
        # processes, the trainer learns from half of the users only.
        deadline = time.monotonic() + 90
        while [len(owned(log)) for log in logs] != [4 // processes] * processes:
            assert time.monotonic() < deadline, [log.read_text() for log in logs]
            time.sleep(0.2)
        produced = run(env, "produce", "--users", str(USERS), "--malformed", "10", *window)
        assert window or "from 2026-01-01" in produced
        wait_caught_up(client, env, serves, logs)

        # A model is published, and most users are in a segment within a minute (a process
        # that does not train adopts the model at its next look at the lease, 10 s apart, and
        # then places the users it holds).
        deadline = time.monotonic() + 60
        while (placed := placed_users(client, prefix, env["SEGSTREAM_INPUT_TOPIC"])) < 0.8 * USERS:
            assert time.monotonic() < deadline, placed
            time.sleep(0.5)
        assert metric(logs, "segstream_model_snapshots_published_total") >= 1
        document = json.loads(run(env, "inspect", "user-000042"))
        assert document["segment"] is not None and document["segment"]["name"]
        changes = [json.loads(v) for _, v in read_topic(env["SEGSTREAM_OUTPUT_TOPIC"])]
        assert sum(c["kind"] == "user_changed" for c in changes) >= placed

        # A second run continues where the stream is: nothing late, every event counted.
        events_before = metric(logs, "segstream_events_processed_total")
        again = run(env, "produce", "--users", str(USERS))
        sent = int(re.search(r"produced ([\d,]+) messages", again).group(1).replace(",", ""))  # type: ignore[union-attr]
        wait_caught_up(client, env, serves, logs)
        assert read_topic(env["SEGSTREAM_LATE_TOPIC"]) == []
        assert metric(logs, "segstream_events_processed_total") - events_before == sent
    finally:
        for serve in serves:
            serve.terminate()
        for serve in serves:
            serve.wait(timeout=60)
        for key in client.scan_iter(f"{prefix}:*", count=1000):
            client.delete(key)
