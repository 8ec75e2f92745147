"""Clients of Kafka and Redis as the settings say: addresses, TLS and credentials.

Every client segstream makes (consumers, producers, admin clients, Redis connections of the
service, the API and the tools) takes its options from here, so a secured cluster needs the
settings once. Secrets stay in the options handed to the clients: they are never logged.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aredis

from stream.settings_connections import ConnectionSettings


def confluent_options(settings: ConnectionSettings) -> dict[str, Any]:
    """librdkafka's security options (empty for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {}
    if protocol != "PLAINTEXT":
        options["security.protocol"] = protocol.lower()
    if protocol.startswith("SASL_"):
        options["sasl.mechanism"] = settings.kafka_sasl_mechanism
        options["sasl.username"] = settings.kafka_sasl_username
        options["sasl.password"] = settings.kafka_sasl_password
    if protocol.endswith("SSL"):
        files = {
            "ssl.ca.location": settings.kafka_ssl_ca_file,
            "ssl.certificate.location": settings.kafka_ssl_cert_file,
            "ssl.key.location": settings.kafka_ssl_key_file,
        }
        options.update({k: v for k, v in files.items() if v})
    return options


def kafka_python_options(settings: ConnectionSettings) -> dict[str, Any]:
    """kafka-python's security options (empty for PLAINTEXT)."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {}
    if protocol != "PLAINTEXT":
        options["security_protocol"] = protocol
    if protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = settings.kafka_sasl_password
    if protocol.endswith("SSL"):
        files = {
            "ssl_cafile": settings.kafka_ssl_ca_file,
            "ssl_certfile": settings.kafka_ssl_cert_file,
            "ssl_keyfile": settings.kafka_ssl_key_file,
        }
        options.update({k: v for k, v in files.items() if v})
    return options


def redis_options(settings: ConnectionSettings, url: str) -> dict[str, Any]:
    """redis-py's options for ``url``: credentials, and TLS files for a ``rediss://`` URL."""
    options: dict[str, Any] = {}
    if settings.redis_username:
        options["username"] = settings.redis_username
    if settings.redis_password:
        options["password"] = settings.redis_password
    if url.startswith("rediss://"):
        files = {
            "ssl_ca_certs": settings.redis_ssl_ca_file,
            "ssl_certfile": settings.redis_ssl_cert_file,
            "ssl_keyfile": settings.redis_ssl_key_file,
        }
        options.update({k: v for k, v in files.items() if v})
    return options


def redis_client(
    settings: ConnectionSettings, url: str | None = None, timeout_s: float = 10
) -> redis.Redis:
    url = url or settings.redis_url
    return redis.Redis.from_url(url, socket_timeout=timeout_s, **redis_options(settings, url))


def async_redis_client(
    settings: ConnectionSettings, url: str | None = None, timeout_s: float = 5
) -> aredis.Redis:
    url = url or settings.redis_url
    return aredis.Redis.from_url(url, socket_timeout=timeout_s, **redis_options(settings, url))
