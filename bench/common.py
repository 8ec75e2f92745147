"""What the benchmarks on the real servers share: the bench stream, a topic, a `segstream serve`
subprocess with its own key prefix and group, and its CPU time read from /proc."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import orjson
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]  # C ext.

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream.feeds.simulator import encode, generate_events  # noqa: E402

BOOTSTRAP = os.environ.get("SEGSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
REDIS_URL = os.environ.get("SEGSTREAM_REDIS_URL", "redis://127.0.0.1:6379/0")
PARTITIONS = 4
RESULTS = ROOT / "bench" / "results"


def bench_messages(events: int, users: int, seed: int = 1) -> list[tuple[bytes, bytes]]:
    """The bench stream: generated shoppers, 51 simulated days in 200,000 events."""
    stream = generate_events(users, seed=seed, sessions_scale=0.25)
    return [encode(e) for e in itertools.islice(stream, events)]


Messages = list[tuple[bytes, bytes]]


def on_the_wall_clock(messages: Messages, rate: float) -> tuple[Messages, Messages]:
    """The first half as stamped (the warm-up), the second re-stamped from the latest event
    time on, advancing at ``rate`` events per second."""
    half = len(messages) // 2
    warmup, rest = messages[:half], messages[half:]
    start = max(orjson.loads(value)["ts"] for _, value in warmup)
    live = []
    for n, (key, value) in enumerate(rest):
        event = orjson.loads(value)
        event["ts"] = start + int(n * 1000 / rate)
        live.append((key, orjson.dumps(event)))
    return warmup, live


def create_topic(topic: str, partitions: int = PARTITIONS, **config: str) -> None:
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in admin.create_topics([NewTopic(topic, partitions, 1, config=config)]).values():
        future.result(timeout=30)


def produce(topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    """Send in order (idempotent: retries keep each partition's order) and wait for every ack."""
    producer = Producer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "enable.idempotence": True,
            "linger.ms": 50,
            "batch.size": 512 * 1024,
        }
    )
    for key, value in messages:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.1)
    if producer.flush(120):
        raise SystemExit("produce: not every event was acknowledged")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process so far (every thread)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Serve:
    """A running `segstream serve` and what it writes under its own key prefix."""

    process: subprocess.Popen[bytes]
    prefix: str
    topic: str
    log: Path

    def saved(self, client: redis.Redis) -> int:
        """Records saved so far: the sum of the partitions' stored next offsets."""
        keys = [f"{self.prefix}:{{{self.topic}-{p}}}:offset" for p in range(PARTITIONS)]
        return sum(int(v) for v in client.mget(keys) if v is not None)

    def check(self) -> None:
        if self.process.poll() is not None:
            raise SystemExit(f"serve exited early; see {self.log}")


def serve_env(topic: str, prefix: str, **settings: str) -> dict[str, str]:
    return {
        **os.environ,
        "SEGSTREAM_INPUT_TOPIC": topic,
        "SEGSTREAM_GROUP": f"bench-{prefix}",
        "SEGSTREAM_KEY_PREFIX": prefix,
        "SEGSTREAM_HTTP_PORT": "0",
        "SEGSTREAM_OUTPUT_TOPIC": f"{topic}.changes",
        "SEGSTREAM_DLQ_TOPIC": f"{topic}.dlq",
        "SEGSTREAM_LATE_TOPIC": f"{topic}.late",
        "SEGSTREAM_ALERT_TOPIC": f"{topic}.alerts",
        "SEGSTREAM_MEMBERSHIP_TOPIC": f"{topic}.membership",
        "SEGSTREAM_KAFKA_BOOTSTRAP": BOOTSTRAP,
        "SEGSTREAM_REDIS_URL": REDIS_URL,
        **settings,
    }


@contextmanager
def running_serve(
    topic: str,
    log_dir: Path,
    name: str,
    root: Path = ROOT,
    settings: Mapping[str, str] | None = None,
    copies: int = 1,
    prefix: str | None = None,
    niceness: int = 0,
) -> Iterator[list[Serve]]:
    """``copies`` serve processes (one group, one key prefix); stopped and cleaned up after.
    ``niceness``: their CPU priority below the caller's (``nice``), every thread's."""
    prefix = prefix or f"bench-{uuid.uuid4().hex[:8]}"
    env = serve_env(topic, prefix, **(settings or {}))
    client = redis.Redis.from_url(REDIS_URL)
    serves: list[Serve] = []
    logs: list[IO[bytes]] = []
    try:
        for copy in range(copies):
            path = log_dir / f"{name}-{copy}.log"
            logs.append(path.open("wb"))
            process = subprocess.Popen(
                [sys.executable, "-m", "stream", "serve"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=logs[-1],
                cwd=root,
                preexec_fn=(lambda: os.nice(niceness)) if niceness else None,
            )
            serves.append(Serve(process, prefix, topic, path))
        yield serves
    finally:
        for serve in serves:
            serve.process.terminate()
        for serve in serves:
            try:
                serve.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                serve.process.kill()
        for log in logs:
            log.close()
        for key in client.scan_iter(f"{prefix}:*", count=5000):
            client.delete(key)


def wait_until(condition: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.01)
