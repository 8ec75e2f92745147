"""Reaching the real servers started by ``scripts/services.sh`` (``make services-up``).

Without them a test skips locally, and fails when CI=true: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from stream.connections import redis_client as stream_redis_client
from stream.errors import DependencyError
from stream.settings import Settings

KAFKA_BOOTSTRAP = os.environ.get("SEGSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
REDIS_URL = os.environ.get("SEGSTREAM_REDIS_URL", "redis://127.0.0.1:6379/0")
# The Redis Cluster `scripts/services.sh up` starts beside the standalone Redis.
CLUSTER_PORT = int(os.environ.get("REDIS_CLUSTER_PORT", "7000"))
# Three of its nodes: a serve restarted while one is down (a killed master) starts from another.
CLUSTER_URL = "redis+cluster://" + ",".join(f"127.0.0.1:{CLUSTER_PORT + n}" for n in range(3))


def missing(what: str, exc: BaseException, hint: str = "start it with `make services-up`") -> None:
    message = f"{what} is not reachable ({exc}); {hint}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def redis_client() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        missing(f"Redis at {REDIS_URL}", exc)
    return client


def cluster_client() -> RedisCluster:
    """A client of the local Redis Cluster, once all its slots are served."""
    try:
        client: Any = stream_redis_client(Settings(), CLUSTER_URL, timeout_s=5)
        client.ping(target_nodes=RedisCluster.ALL_NODES)
    except (redis.RedisError, RedisClusterException, DependencyError) as exc:
        missing(f"the Redis Cluster at {CLUSTER_URL}", exc)
        raise
    return client


def store_client(kind: str) -> Any:
    """A client of the test servers' Redis of one kind: "redis" or "cluster"."""
    return cluster_client() if kind == "cluster" else redis_client()


def kafka_admin() -> KafkaAdminClient:
    try:
        return KafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP, request_timeout_ms=5000)
    except Exception as exc:
        missing(f"Kafka at {KAFKA_BOOTSTRAP}", exc)
        raise


def ordered_producer() -> KafkaProducer:
    """A producer whose retries cannot reorder a partition.

    A fresh broker fails the first produce requests while it creates a topic's partitions; a
    plain producer's retries then land after later batches, and the service rightly sets events
    that arrive over an hour behind their partition aside as late.
    """
    return KafkaProducer(
        bootstrap_servers=KAFKA_BOOTSTRAP, linger_ms=20, acks="all", enable_idempotence=True
    )


def publish(topic: str, messages: list[tuple[bytes, bytes]]) -> None:
    """Send (key, value) messages in order, and wait for every acknowledgement."""
    producer = ordered_producer()
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def unique(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:10]}"


def create_topics(*names: str, partitions: int = 4) -> None:
    admin = kafka_admin()
    try:
        admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        admin.close()


def read_topic(topic: str) -> list[tuple[bytes | None, bytes]]:
    """Every record of ``topic`` from the start to its current end, as (key, value)."""
    consumer = KafkaConsumer(
        bootstrap_servers=KAFKA_BOOTSTRAP,
        enable_auto_commit=False,
        fetch_max_bytes=16 << 20,
        receive_message_max_bytes=20 << 20,
    )
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        out: list[tuple[bytes | None, bytes]] = []
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            for messages in consumer.poll(timeout_ms=1000).values():
                out.extend((m.key, m.value) for m in messages)
        return out
    finally:
        consumer.close()


def topic_config(topic: str) -> dict[str, str]:
    """The topic's configuration as the broker reports it (defaults included)."""
    admin = kafka_admin()
    try:
        (response,) = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
        ((_, _, _, _, entries),) = response.resources
        return {entry[0]: entry[1] for entry in entries}
    finally:
        admin.close()


def end_offsets(topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=KAFKA_BOOTSTRAP)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or []]
        return {tp.partition: end for tp, end in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def wait_for_ping(client: redis.Redis, what: str) -> None:
    """Until a Redis just started answers (5 s at most)."""
    for _ in range(100):
        try:
            client.ping()
            return
        except redis.ConnectionError:
            time.sleep(0.05)
    raise AssertionError(f"{what} did not start")


class PrivateRedis:
    """A Redis of the test's own, without persistence, that the test may restart (losing every
    key) without touching the shared one."""

    def __init__(self, log_dir: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        if shutil.which("redis-server") is None:
            missing("redis-server", FileNotFoundError("not on PATH"), "run `make services-up`")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.log_dir),
            ],
            stdout=(self.log_dir / "redis.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for_ping(self.client(), f"redis on port {self.port}")

    def restart(self) -> None:
        """kill -9 and start again: every key is gone, as after a crash without persistence."""
        self.stop()
        self.start()

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)
