"""What the end-to-end tests share: a client of the real Redis, and services on topics and keys
of their own that are stopped and whose keys are deleted after each test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.servers import CLUSTER_URL, cluster_client, redis_client
from tests.support.service import Services


@pytest.fixture(scope="session")
def client() -> redis.Redis:
    return redis_client()


@pytest.fixture
def services(tmp_path: Path, client: redis.Redis) -> Iterator[Services]:
    made = Services(tmp_path)
    yield made
    for service in made.made:
        on_cluster = service.env["SEGSTREAM_REDIS_URL"] == CLUSTER_URL
        service.cleanup(cluster_client() if on_cluster else client)
