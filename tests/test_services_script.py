"""scripts/services.sh: `up` is idempotent and leaves running servers alone."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.servers import kafka_admin, redis_client

ROOT = Path(__file__).parents[1]


@pytest.mark.kafka
@pytest.mark.redis
def test_up_again_reuses_the_running_servers() -> None:
    redis_client()  # fails under CI=true if the servers are not up
    kafka_admin().close()
    result = subprocess.run(
        [ROOT / "scripts/services.sh", "up"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert "redis already running" in result.stderr
    assert "redis cluster already running" in result.stderr
    assert "kafka already running" in result.stderr
    status = subprocess.run(
        [ROOT / "scripts/services.sh", "status"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    assert "redis: running" in status and "kafka: running" in status
    assert "redis cluster: running" in status


def test_rejects_an_unknown_command() -> None:
    result = subprocess.run(
        [ROOT / "scripts/services.sh", "sideways"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2 and "usage" in result.stderr
