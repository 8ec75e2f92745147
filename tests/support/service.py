"""Running ``segstream serve`` as a real subprocess against the real servers."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from operators.features import UserState
from operators.record import unpack_state
from stream.kafka.topics import create_topics
from stream.redis.client import Client
from stream.redis.state_store import RedisStateStore
from stream.settings import Settings
from tests.support.servers import KAFKA_BOOTSTRAP, REDIS_URL, unique
from tests.support.state import partition_users


def stored_offsets(client: Client, prefix: str, topic: str) -> dict[int, int]:
    """Each partition's next offset as the consumers saved it in Redis (4 partitions)."""
    found = {}
    for partition in range(4):
        value = client.get(f"{prefix}:{{{topic}-{partition}}}:offset")
        if value is not None:
            found[partition] = int(value)
    return found


class Service:
    def __init__(self, log_dir: Path, **overrides: str) -> None:
        self.input_topic = unique("events")
        self.output_topic = unique("changes")
        self.dlq_topic = unique("dlq")
        self.late_topic = unique("late")
        self.alert_topic = unique("alerts")
        self.membership_topic = unique("membership")
        self.prefix = unique("e2e")
        self.env = {
            **os.environ,
            "SEGSTREAM_KAFKA_BOOTSTRAP": KAFKA_BOOTSTRAP,
            "SEGSTREAM_REDIS_URL": REDIS_URL,
            "SEGSTREAM_INPUT_TOPIC": self.input_topic,
            "SEGSTREAM_OUTPUT_TOPIC": self.output_topic,
            "SEGSTREAM_DLQ_TOPIC": self.dlq_topic,
            "SEGSTREAM_LATE_TOPIC": self.late_topic,
            "SEGSTREAM_ALERT_TOPIC": self.alert_topic,
            "SEGSTREAM_MEMBERSHIP_TOPIC": self.membership_topic,
            "SEGSTREAM_GROUP": unique("group"),
            "SEGSTREAM_KEY_PREFIX": self.prefix,
            "SEGSTREAM_HTTP_PORT": "0",
            "SEGSTREAM_HTTP_HOST": "127.0.0.1",
            "SEGSTREAM_POLL_TIMEOUT_S": "0.2",
            "SEGSTREAM_SESSION_TIMEOUT_MS": "6000",
            **overrides,
        }
        # As users create them: `segstream create-topics` (4 partitions).
        create_topics(Settings.from_env(self.env), partitions=4, replication=1)
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self, **extra_env: str) -> None:
        self.runs += 1
        self.log_path = self.log_dir / f"serve-{self.runs}.log"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stream", "serve"],
            env={**self.env, **extra_env},
            stdout=subprocess.DEVNULL,
            stderr=self.log_path.open("wb"),
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def http_port(self, timeout_s: float = 30) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(r"metrics on :(\d+)", self.log())
            if found:
                return int(found.group(1))
            time.sleep(0.1)
        raise AssertionError(f"service did not start:\n{self.log()}")

    def wait_exit(self, timeout_s: float = 60) -> int:
        assert self.process is not None
        return self.process.wait(timeout=timeout_s)

    def terminate(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.wait_exit()

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def offsets(self, client: Client) -> dict[int, int]:
        return stored_offsets(client, self.prefix, self.input_topic)

    def wait_for_offsets(
        self, client: Client, ends: dict[int, int], timeout_s: float = 180
    ) -> None:
        """Until Redis holds ``ends`` as every partition's next offset; fail if the service dies."""
        wanted = {p: e for p, e in ends.items() if e}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.offsets(client) == wanted:
                return
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"service exited ({self.process.returncode}):\n{self.log()}")
            time.sleep(0.1)
        reached = self.offsets(client)
        raise AssertionError(f"offsets {reached} never reached {wanted}:\n{self.log()}")

    def states(self, client: Client) -> dict[str, UserState]:
        """Every user's stored state, over the partitions."""
        store = RedisStateStore(client, self.prefix)
        return {
            user: unpack_state(record)
            for partition in store.saved_partitions(self.input_topic)
            for user, record in partition_users(store, partition).items()
        }

    def cleanup(self, client: Client) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()
        for key in client.scan_iter(f"{self.prefix}:*", count=1000):
            client.delete(key)


class Services:
    """Makes services for one test (``new``), or takes one made elsewhere (``adopt``)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.made: list[Service] = []

    def new(self, **overrides: str) -> Service:
        log_dir = self.log_dir if not self.made else self.log_dir / f"service-{len(self.made)}"
        return self.adopt(Service(log_dir, **overrides))

    def adopt(self, service: Service) -> Service:
        self.made.append(service)
        return service
