"""Clients of Kafka and Redis as the settings say: addresses, TLS and credentials.

Every client segstream makes (consumers, producers, admin clients, Redis connections of the
service, the API and the tools) takes its options from here, so a secured cluster needs the
settings once. Secrets stay in the options handed to the clients: they are never logged.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode
from redis.retry import Retry

from stream.errors import DependencyError
from stream.redis.client import ERRORS, AsyncClient, Client, is_cluster, node_url, seed_nodes
from stream.settings import ConnectionSettings

# Each Kafka security setting's name in librdkafka's configuration and in kafka-python's.
_KAFKA_NAMES = {
    "kafka_sasl_mechanism": ("sasl.mechanism", "sasl_mechanism"),
    "kafka_sasl_username": ("sasl.username", "sasl_plain_username"),
    "kafka_sasl_password": ("sasl.password", "sasl_plain_password"),
    "kafka_ssl_ca_file": ("ssl.ca.location", "ssl_cafile"),
    "kafka_ssl_cert_file": ("ssl.certificate.location", "ssl_certfile"),
    "kafka_ssl_key_file": ("ssl.key.location", "ssl_keyfile"),
}


def _kafka_options(settings: ConnectionSettings, client: int) -> dict[str, Any]:
    """The security options in one client's names (0: librdkafka, 1: kafka-python); none for
    PLAINTEXT, the SASL ones with SASL_*, the TLS files (those set) with *SSL."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {("security.protocol", "security_protocol")[client]: protocol}
    for setting, names in _KAFKA_NAMES.items():
        wanted = protocol.startswith("SASL_") if "sasl" in setting else protocol.endswith("SSL")
        value = getattr(settings, setting)
        if wanted and value:
            options[names[client]] = value
    return options


def confluent_options(settings: ConnectionSettings) -> dict[str, Any]:
    """librdkafka's security options (empty for PLAINTEXT)."""
    return _kafka_options(settings, 0)


def kafka_python_options(settings: ConnectionSettings) -> dict[str, Any]:
    """kafka-python's security options (empty for PLAINTEXT)."""
    return _kafka_options(settings, 1)


def redis_options(settings: ConnectionSettings, url: str) -> dict[str, Any]:
    """redis-py's options for ``url``: credentials, and TLS files for a ``rediss://`` URL."""
    options: dict[str, Any] = {}
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_password:
        options["password"] = settings.redis_password
    if node_url(url).startswith("rediss://"):
        files = {
            "ssl_ca_certs": settings.redis_ssl_ca_file,
            "ssl_certfile": settings.redis_ssl_cert_file,
            "ssl_keyfile": settings.redis_ssl_key_file,
        }
        options.update({k: v for k, v in files.items() if v})
    return options


def _cluster_options(timeout_s: float, asynchronous: bool = False) -> dict[str, Any]:
    """A cluster client's retries: a MOVED (a reshard) or a lost node (a failover) makes it
    refresh the slots and try again; a failover takes a few node timeouts, and the loop's own
    bounded retries (``SEGSTREAM_RETRY_ATTEMPTS``) cover a longer outage."""
    return {
        "socket_connect_timeout": min(timeout_s, 2.0),
        "retry": (AsyncRetry if asynchronous else Retry)(ExponentialBackoff(cap=1.0, base=0.05), 6),
    }


def redis_client(
    settings: ConnectionSettings, url: str | None = None, timeout_s: float = 10
) -> Client:
    """A client of the Redis ``url`` names (default: ``SEGSTREAM_REDIS_URL``); a cluster's for
    ``redis+cluster://`` (``stream.redis.client``)."""
    url = url or settings.redis_url
    options = {"socket_timeout": timeout_s, **redis_options(settings, url)}
    if is_cluster(url):
        options.update(_cluster_options(timeout_s))
        nodes = [ClusterNode(host, port) for host, port in seed_nodes(url)[1:]]  # type: ignore[no-untyped-call]
        try:
            return redis.RedisCluster.from_url(node_url(url), startup_nodes=nodes, **options)
        except ERRORS as exc:  # no node named answers: unavailable, not a bug
            raise DependencyError(f"redis: no node of the cluster answers: {exc}") from exc
    return redis.Redis.from_url(url, **options)


def async_redis_client(
    settings: ConnectionSettings, url: str | None = None, timeout_s: float = 5
) -> AsyncClient:
    url = url or settings.redis_url
    options = {"socket_timeout": timeout_s, **redis_options(settings, url)}
    if is_cluster(url):
        options.update(_cluster_options(timeout_s, asynchronous=True))
        nodes = [AsyncClusterNode(host, port) for host, port in seed_nodes(url)[1:]]
        return aredis.RedisCluster.from_url(node_url(url), startup_nodes=nodes, **options)
    return aredis.Redis.from_url(url, **options)
