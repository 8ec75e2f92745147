"""The security settings as each client's options (the real servers: tests/e2e/test_secured)."""

from __future__ import annotations

import pytest

from stream.connections import (
    confluent_options,
    kafka_python_options,
    redis_client,
    redis_options,
)
from stream.errors import DependencyError
from stream.redis.client import node_url, seed_nodes
from stream.settings import Settings

SASL_SSL = Settings(
    kafka_security_protocol="SASL_SSL",
    kafka_sasl_mechanism="SCRAM-SHA-256",
    kafka_sasl_username="svc",
    kafka_sasl_password="s3cr3t-pw",
    kafka_ssl_ca_file="/ca.pem",
)


def test_plaintext_adds_nothing_to_either_client() -> None:
    assert confluent_options(Settings()) == {} == kafka_python_options(Settings())


def test_sasl_ssl_maps_to_each_clients_names() -> None:
    assert confluent_options(SASL_SSL) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "svc",
        "sasl.password": "s3cr3t-pw",
        "ssl.ca.location": "/ca.pem",
    }
    assert kafka_python_options(SASL_SSL) == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "s3cr3t-pw",
        "ssl_cafile": "/ca.pem",
    }


def test_redis_tls_files_apply_to_rediss_urls_only() -> None:
    settings = Settings(redis_password="pw", redis_ssl_ca_file="/ca.pem")
    assert redis_options(settings, "redis://h:6379/0") == {"password": "pw"}
    assert redis_options(settings, "rediss://h:6380/0") == {
        "password": "pw",
        "ssl_ca_certs": "/ca.pem",
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SEGSTREAM_KAFKA_SECURITY_PROTOCOL": "TLS"}, "kafka_security_protocol must be one of"),
        ({"SEGSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "SASL needs kafka_sasl_username"),
        ({"SEGSTREAM_REDIS_SSL_CERT_FILE": "/c.pem"}, "go together"),
    ],
)
def test_incomplete_security_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Settings.from_env(env)


def test_secrets_never_show_in_the_settings_repr() -> None:
    assert "s3cr3t-pw" not in repr(SASL_SSL) and "svc" in repr(SASL_SSL)


def test_a_cluster_url_names_one_or_more_seed_nodes() -> None:
    url = "rediss+cluster://app:pw@10.0.0.5:6380,10.0.0.6:6381/0"
    assert node_url(url) == "rediss://app:pw@10.0.0.5:6380/0"
    assert seed_nodes(url) == [("10.0.0.5", 6380), ("10.0.0.6", 6381)]
    assert node_url("redis://h:1/0") == "redis://h:1/0"  # not a cluster: as it is


def test_a_cluster_with_no_node_answering_is_unavailable_not_a_crash() -> None:
    with pytest.raises(DependencyError, match="no node of the cluster answers"):
        redis_client(Settings(), "redis+cluster://127.0.0.1:1,127.0.0.1:2", timeout_s=1)
