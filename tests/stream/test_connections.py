"""The security settings as each client's options (the real servers: tests/e2e/test_secured)."""

from __future__ import annotations

import pytest

from stream.connections import confluent_options, kafka_python_options, redis_options
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
