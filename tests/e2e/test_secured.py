"""End to end on secured servers: Kafka over SASL_SSL with SCRAM, Redis over TLS with a client
certificate and a password; secrets from files, never in a log."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream.feeds.simulator import encode, generate_events
from tests.support.secured import (
    KAFKA_PASSWORD,
    KAFKA_SECURE_BOOTSTRAP,
    KAFKA_USER,
    SecuredRedis,
    tls_dir,
)
from tests.support.servers import end_offsets, publish, read_topic
from tests.support.service import Service

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
REDIS_PASSWORD = "redis-test-secret-7f3a"


@pytest.fixture
def secured_redis(tmp_path: Path) -> Iterator[SecuredRedis]:
    server = SecuredRedis(tmp_path, REDIS_PASSWORD)
    yield server
    server.stop()


def secured_settings(tmp_path: Path, redis_url: str, client: str) -> dict[str, str]:
    """The settings of a deployment on the secured servers, secrets in files."""
    tls = tls_dir()
    (tmp_path / "kafka-password").write_text(KAFKA_PASSWORD + "\n")
    (tmp_path / "redis-password").write_text(REDIS_PASSWORD)
    return {
        "SEGSTREAM_KAFKA_CLIENT": client,
        "SEGSTREAM_KAFKA_BOOTSTRAP": KAFKA_SECURE_BOOTSTRAP,
        "SEGSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "SEGSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "SEGSTREAM_KAFKA_SASL_USERNAME": KAFKA_USER,
        "SEGSTREAM_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "kafka-password"),
        "SEGSTREAM_KAFKA_SSL_CA_FILE": str(tls / "ca.pem"),
        "SEGSTREAM_REDIS_URL": redis_url,
        "SEGSTREAM_REDIS_PASSWORD_FILE": str(tmp_path / "redis-password"),
        "SEGSTREAM_REDIS_SSL_CA_FILE": str(tls / "ca.pem"),
        "SEGSTREAM_REDIS_SSL_CERT_FILE": str(tls / "client.pem"),
        "SEGSTREAM_REDIS_SSL_KEY_FILE": str(tls / "client.key"),
        "SEGSTREAM_MAX_BATCH_RECORDS": "500",
        "SEGSTREAM_SNAPSHOT_EVERY_SAMPLES": "300",
        "SEGSTREAM_TRAIN_SAMPLE_PERMILLE": "1000",
    }


@pytest.mark.parametrize("client", ["confluent-kafka", "kafka-python"])
def test_serve_inspect_and_erase_on_secured_servers(
    tmp_path: Path, secured_redis: SecuredRedis, client: str
) -> None:
    # The topics are created through the SASL_SSL listener, as `create-topics` would.
    service = Service(tmp_path, **secured_settings(tmp_path, secured_redis.url, client))
    store = secured_redis.client()
    events = list(itertools.islice(generate_events(200, seed=6, days=20), 2500))
    publish(service.input_topic, [encode(e) for e in events])
    service.start()
    service.wait_for_offsets(store, end_offsets(service.input_topic))
    states = service.states(store)
    assert len(states) == len({e["user_id"] for e in events})
    changes = [json.loads(v) for _, v in read_topic(service.output_topic)]
    assert any(c["kind"] == "user_changed" for c in changes)

    user = max(states, key=lambda u: states[u].seq)
    shown = subprocess.run(
        [sys.executable, "-m", "stream", "inspect", user],
        env=service.env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(shown)["seq"] == states[user].seq
    subprocess.run(
        [sys.executable, "-m", "stream", "erase", user, "--by", "security test"],
        env=service.env,
        capture_output=True,
        check=True,
    )
    service.wait_for_offsets(store, end_offsets(service.input_topic))
    assert user not in service.states(store)

    assert service.terminate() == 0
    log = service.log()
    assert KAFKA_PASSWORD not in log and REDIS_PASSWORD not in log
    service.cleanup(store)


def test_a_wrong_redis_password_stops_serve_with_a_clear_error(
    tmp_path: Path, secured_redis: SecuredRedis
) -> None:
    settings = secured_settings(tmp_path, secured_redis.url, "confluent-kafka")
    (tmp_path / "redis-password").write_text("not-the-password")
    service = Service(tmp_path, **settings)
    service.start()
    assert service.wait_exit(60) == 69  # EX_UNAVAILABLE: a supervisor retries later
    log = service.log()
    assert "redis" in log.lower() and "not-the-password" not in log
