"""Checks of a ``Settings`` beyond each value's type: ranges and combinations."""

from __future__ import annotations

from operators.features import FEATURES
from stream.settings import Settings  # loaded first: it imports us when checking
from stream.settings_connections import KAFKA_CLIENTS, KAFKA_PROTOCOLS, SASL_MECHANISMS


def check(settings: Settings) -> None:
    """Raise ``ValueError`` naming the first bad value."""
    positive = (
        "max_batch_records",
        "segments",
        "snapshot_every_samples",
        "retry_attempts",
        "max_message_bytes",
        "switch_after",
        "rescore_interval_s",
        "max_idle_days",
        "sweep_batch_users",
        "label_every_days",
        "trainer_lease_s",
        "api_max_body_bytes",
    )
    for name in positive:
        if getattr(settings, name) < 1:
            raise ValueError(f"{name} must be at least 1")
    if 0 < settings.user_ttl_s < settings.max_idle_days * 86_400:
        raise ValueError(
            "user_ttl_s must be 0 or at least max_idle_days: Redis would drop idle users "
            "before they expire, without a user_expired event or their segment size"
        )
    if settings.kafka_security_protocol not in KAFKA_PROTOCOLS:
        raise ValueError(f"kafka_security_protocol must be one of {', '.join(KAFKA_PROTOCOLS)}")
    sasl = settings.kafka_security_protocol.startswith("SASL_")
    if sasl and settings.kafka_sasl_mechanism not in SASL_MECHANISMS:
        raise ValueError(f"kafka_sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)}")
    if sasl and not (settings.kafka_sasl_username and settings.kafka_sasl_password):
        raise ValueError("SASL needs kafka_sasl_username and kafka_sasl_password")
    for what in ("kafka", "redis"):
        cert = getattr(settings, f"{what}_ssl_cert_file")
        if bool(cert) != bool(getattr(settings, f"{what}_ssl_key_file")):
            raise ValueError(f"{what}_ssl_cert_file and {what}_ssl_key_file go together")
    if settings.kafka_client not in KAFKA_CLIENTS:
        raise ValueError(f"kafka_client must be one of {', '.join(KAFKA_CLIENTS)}")
    if not 0 <= settings.train_sample_permille <= 1000:
        raise ValueError("train_sample_permille must be between 0 and 1000")
    if settings.first_model_wait_s < 0:
        raise ValueError("first_model_wait_s must not be negative")
    if settings.max_future_s < 0 or settings.dlq_max_bytes < 4096:
        raise ValueError("max_future_s must not be negative; dlq_max_bytes at least 4096")
    settings.min_event_ms  # noqa: B018 - parsing validates the date
    if settings.poll_timeout_s <= 0 or settings.switch_margin < 0 or settings.late_grace_s < 0:
        raise ValueError(
            "poll_timeout_s must be positive; switch_margin and late_grace_s not negative"
        )
    settings.tag_definitions  # noqa: B018 - parsing validates the definitions
    unknown = set(settings.segment_feature_names) - set(FEATURES)
    if unknown or not settings.segment_feature_names:
        raise ValueError(
            f"segment_features: unknown {', '.join(sorted(unknown)) or 'empty list'}; "
            f"known: {', '.join(FEATURES)}"
        )
