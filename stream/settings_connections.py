"""The settings of segstream's connections to Kafka and Redis: where, and how securely.

The first part of ``stream.settings.Settings`` (which extends ``ConnectionSettings``);
``stream.connections`` turns them into each client's options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KAFKA_CLIENTS = ("confluent-kafka", "kafka-python")
KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _setting(default: Any, env: str, doc: str, secret: bool = False) -> Any:
    """A setting read from ``env``; a secret's may also come from the file ``<env>_FILE`` names,
    and is left out of the settings' repr."""
    return field(
        default=default, repr=not secret, metadata={"env": env, "doc": doc, "secret": secret}
    )


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    kafka_bootstrap: str = _setting(
        "127.0.0.1:9092", "SEGSTREAM_KAFKA_BOOTSTRAP", "Kafka bootstrap servers, comma-separated"
    )
    kafka_client: str = _setting(
        "confluent-kafka",
        "SEGSTREAM_KAFKA_CLIENT",
        "Kafka client library: confluent-kafka (librdkafka; the faster) or kafka-python",
    )
    kafka_security_protocol: str = _setting(
        "PLAINTEXT",
        "SEGSTREAM_KAFKA_SECURITY_PROTOCOL",
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL: every Kafka client segstream makes uses it",
    )
    kafka_sasl_mechanism: str = _setting(
        "SCRAM-SHA-512",
        "SEGSTREAM_KAFKA_SASL_MECHANISM",
        "With SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
    )
    kafka_sasl_username: str = _setting("", "SEGSTREAM_KAFKA_SASL_USERNAME", "With SASL_*")
    kafka_sasl_password: str = _setting(
        "",
        "SEGSTREAM_KAFKA_SASL_PASSWORD",
        "With SASL_* (or a file: SEGSTREAM_KAFKA_SASL_PASSWORD_FILE)",
        secret=True,
    )
    kafka_ssl_ca_file: str = _setting(
        "", "SEGSTREAM_KAFKA_SSL_CA_FILE", "With *SSL: CA certificates (PEM); empty: the system's"
    )
    kafka_ssl_cert_file: str = _setting(
        "", "SEGSTREAM_KAFKA_SSL_CERT_FILE", "With *SSL: client certificate (PEM), if required"
    )
    kafka_ssl_key_file: str = _setting(
        "", "SEGSTREAM_KAFKA_SSL_KEY_FILE", "With *SSL: the client certificate's key (PEM)"
    )
    redis_url: str = _setting(
        "redis://127.0.0.1:6379/0",
        "SEGSTREAM_REDIS_URL",
        "Redis URL for user state and offsets (rediss://: TLS)",
    )
    redis_username: str = _setting(
        "", "SEGSTREAM_REDIS_USERNAME", "Redis ACL user (empty: the URL's, or the default user)"
    )
    redis_password: str = _setting(
        "",
        "SEGSTREAM_REDIS_PASSWORD",
        "Redis password (or a file: SEGSTREAM_REDIS_PASSWORD_FILE); empty: the URL's, if any",
        secret=True,
    )
    redis_ssl_ca_file: str = _setting(
        "", "SEGSTREAM_REDIS_SSL_CA_FILE", "With rediss://: CA certificates (PEM)"
    )
    redis_ssl_cert_file: str = _setting(
        "", "SEGSTREAM_REDIS_SSL_CERT_FILE", "With rediss://: client certificate (PEM), if required"
    )
    redis_ssl_key_file: str = _setting(
        "", "SEGSTREAM_REDIS_SSL_KEY_FILE", "With rediss://: the client certificate's key (PEM)"
    )
