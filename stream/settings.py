"""Settings: read once from the environment (and an optional TOML file) into a frozen object.

Precedence: environment variable > TOML file named by ``SEGSTREAM_CONFIG`` > default. Field
names carry their units. ``segstream --help`` and docs/settings.md list every variable.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from operators.features import FEATURES
from operators.tags import DEFAULT_TAGS, TagDefinition, parse_tags

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
        "Redis URL for user state and offsets (rediss://: TLS; redis+cluster:// or "
        "rediss+cluster://: a Redis Cluster, by one or more nodes' addresses, comma-separated)",
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


def _tag_json(tag: TagDefinition) -> dict[str, Any]:
    """The definition's fields that differ from their defaults, as JSON-ready values."""
    defaults = {f.name: f.default for f in fields(TagDefinition)}
    return {
        k: list(v) if isinstance(v, tuple) else v
        for k, v in asdict(tag).items()
        if v != defaults.get(k)
    }


DEFAULT_TAGS_JSON = json.dumps([_tag_json(t) for t in DEFAULT_TAGS], separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Settings(ConnectionSettings):
    input_topic: str = _setting("user-events", "SEGSTREAM_INPUT_TOPIC", "Topic of user events")
    output_topic: str = _setting(
        "segment-changes", "SEGSTREAM_OUTPUT_TOPIC", "Topic segment changes are published to"
    )
    dlq_topic: str = _setting(
        "user-events.dlq", "SEGSTREAM_DLQ_TOPIC", "Dead-letter topic for rejected messages"
    )
    late_topic: str = _setting(
        "user-events.late",
        "SEGSTREAM_LATE_TOPIC",
        "Topic for events older than their partition's watermark (counted, not applied)",
    )
    alert_topic: str = _setting(
        "churn-alerts",
        "SEGSTREAM_ALERT_TOPIC",
        "Topic of alerts: a user entered an alerting tag (see SEGSTREAM_ALERT_TAGS)",
    )
    membership_topic: str = _setting(
        "segment-membership",
        "SEGSTREAM_MEMBERSHIP_TOPIC",
        "Compacted topic of each user's current segment and tags, keyed by user id",
    )
    group: str = _setting("segstream", "SEGSTREAM_GROUP", "Kafka consumer group id")
    http_port: int = _setting(
        8080, "SEGSTREAM_HTTP_PORT", "Port of /metrics and /healthz (0 picks a free port)"
    )
    http_host: str = _setting(
        "127.0.0.1",
        "SEGSTREAM_HTTP_HOST",
        "Address serve's /metrics and /healthz server binds (0.0.0.0: every interface)",
    )
    api_port: int = _setting(8081, "SEGSTREAM_API_PORT", "Port of `segstream api` (0: a free port)")
    api_host: str = _setting(
        "127.0.0.1",
        "SEGSTREAM_API_HOST",
        "Address `segstream api` binds (0.0.0.0: every interface)",
    )
    api_redis_url: str = _setting(
        "",
        "SEGSTREAM_API_REDIS_URL",
        "Redis the API reads from, e.g. a replica, apart from the consumers' long writes; "
        "empty: SEGSTREAM_REDIS_URL (segment names are written there always)",
        secret=True,
    )
    api_token: str = _setting(
        "",
        "SEGSTREAM_API_TOKEN",
        "Bearer token the API requires for writes (and reads, see below); empty: writes refused. "
        "Or a file: SEGSTREAM_API_TOKEN_FILE",
        secret=True,
    )
    api_token_reads: bool = _setting(
        False,
        "SEGSTREAM_API_TOKEN_READS",
        "true: the API's reads (and its OpenAPI document and docs pages) require the token too",
    )
    api_max_body_bytes: int = _setting(
        65_536,
        "SEGSTREAM_API_MAX_BODY_BYTES",
        "Largest request body the API reads; a larger one is refused (413) before it is read",
    )
    api_docs: bool = _setting(
        False,
        "SEGSTREAM_API_DOCS",
        "true: serve the interactive docs at /docs and /redoc (their scripts load from a public "
        "CDN); /openapi.json is always served",
    )
    key_prefix: str = _setting(
        "segstream", "SEGSTREAM_KEY_PREFIX", "Prefix of every Redis key segstream writes"
    )
    max_batch_records: int = _setting(
        2000, "SEGSTREAM_MAX_BATCH_RECORDS", "Most records handled in one batch"
    )
    poll_timeout_s: float = _setting(
        0.5, "SEGSTREAM_POLL_TIMEOUT_S", "Longest wait for records in one poll"
    )
    session_timeout_ms: int = _setting(
        10_000,
        "SEGSTREAM_SESSION_TIMEOUT_MS",
        "Kafka group session timeout: how soon a dead consumer's partitions move",
    )
    max_message_bytes: int = _setting(
        65_536, "SEGSTREAM_MAX_MESSAGE_BYTES", "Larger messages are dead-lettered as oversized"
    )
    dlq_max_bytes: int = _setting(
        1_000_000,
        "SEGSTREAM_DLQ_MAX_BYTES",
        "Largest dead letter sent whole; past it, the original is described (size, SHA-256, "
        "first KiB, topic/partition/offset) instead of copied",
    )
    min_event_time: str = _setting(
        "1980-01-01",
        "SEGSTREAM_MIN_EVENT_TIME",
        "Earliest accepted event time (ISO date, UTC); earlier events are dead-lettered as "
        "bad_timestamp",
    )
    max_future_s: int = _setting(
        300,
        "SEGSTREAM_MAX_FUTURE_S",
        "Events dated more than this after their Kafka timestamp (or our clock) are "
        "dead-lettered as future_timestamp",
    )
    redis_buckets: int = _setting(
        16_384,
        "SEGSTREAM_REDIS_BUCKETS",
        "Record buckets per input partition, fixed when a consumer first claims it: about users "
        "per partition / 15 (docs/sizing.md)",
    )
    segments: int = _setting(4, "SEGSTREAM_SEGMENTS", "Number of segments (k of k-means)")
    segment_features: str = _setting(
        "recency_days,frequency,monetary",
        "SEGSTREAM_SEGMENT_FEATURES",
        "Comma-separated features segments are built on (log1p, then standardized)",
    )
    tags: str = _setting(
        DEFAULT_TAGS_JSON,
        "SEGSTREAM_TAGS",
        "Tag definitions, a JSON list (docs/model.md, 'Tags'); [] for none",
    )
    alert_tags: str = _setting(
        "churn_risk", "SEGSTREAM_ALERT_TAGS", "Comma-separated tags whose entry is an alert"
    )
    switch_margin: float = _setting(
        0.25,
        "SEGSTREAM_SWITCH_MARGIN",
        "A user moves to a nearer segment at once only if nearer by this much (standardized)",
    )
    switch_after: int = _setting(
        3,
        "SEGSTREAM_SWITCH_AFTER",
        "...or after this many consecutive assignments to the same other segment",
    )
    train_sample_permille: int = _setting(
        250,
        "SEGSTREAM_TRAIN_SAMPLE_PERMILLE",
        "Share of users, in per mille, whose features train the segment model and whose labels "
        "train the predictive tags (by a stable digest of the user id)",
    )
    snapshot_every_samples: int = _setting(
        10_000,
        "SEGSTREAM_SNAPSHOT_EVERY_SAMPLES",
        "Publish a new frozen model snapshot after this many training samples (the first one "
        "once the model is warm: 1,000 samples, or this many if fewer)",
    )
    first_model_wait_s: float = _setting(
        60.0,
        "SEGSTREAM_FIRST_MODEL_WAIT_S",
        "With no model published yet, the trainer publishes one after this long (wall clock) "
        "from as few as 25 samples per segment, if the 1,000-sample warm-up takes longer",
    )
    model_seed: int = _setting(42, "SEGSTREAM_MODEL_SEED", "Random seed of the segment model")
    training: bool = _setting(
        True,
        "SEGSTREAM_TRAINING",
        "false freezes the published models: no process trains or takes the trainer lease",
    )
    late_grace_s: int = _setting(
        3600,
        "SEGSTREAM_LATE_GRACE_S",
        "Watermark = latest event time seen in a partition minus this; older events are late",
    )
    rescore_interval_s: int = _setting(
        86_400,
        "SEGSTREAM_RESCORE_INTERVAL_S",
        "A user with no events is re-scored this often (event time), so quiet users move",
    )
    max_idle_days: int = _setting(
        400,
        "SEGSTREAM_MAX_IDLE_DAYS",
        "A user idle this long (event time) expires: state removed, a user_expired event",
    )
    label_every_days: int = _setting(
        7,
        "SEGSTREAM_LABEL_EVERY_DAYS",
        "A sampled user offers each predictive tag a label at most this often (event time)",
    )
    sweep_batch_users: int = _setting(
        5000,
        "SEGSTREAM_SWEEP_BATCH_USERS",
        "Most due users re-scored per partition per batch; also the users scanned per "
        "step for those in a segment a new model retired",
    )
    trainer_lease_s: int = _setting(
        30,
        "SEGSTREAM_TRAINER_LEASE_S",
        "One process trains at a time; another takes over this long after it stops renewing",
    )
    retry_attempts: int = _setting(
        5, "SEGSTREAM_RETRY_ATTEMPTS", "Tries of a failing Kafka or Redis call before exiting"
    )
    log_level: str = _setting("INFO", "SEGSTREAM_LOG_LEVEL", "Python logging level")

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build from ``environ`` (pass ``os.environ``); raise ``ValueError`` on a bad value."""
        file_values: dict[str, Any] = {}
        config_path = environ.get("SEGSTREAM_CONFIG")
        if config_path:
            with Path(config_path).open("rb") as handle:
                file_values = tomllib.load(handle)
        known = {f.name for f in fields(cls)}
        unknown = set(file_values) - known
        if unknown:
            raise ValueError(f"unknown settings in {config_path}: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for f in fields(cls):
            kind: Any = _boolean if isinstance(f.default, bool) else type(f.default)
            raw = environ.get(f.metadata["env"], file_values.get(f.name))
            secret_file = environ.get(f.metadata["env"] + "_FILE") if f.metadata["secret"] else None
            if raw is None and secret_file:
                raw = Path(secret_file).read_text().rstrip("\r\n")
            if raw is None:
                continue
            try:
                values[f.name] = kind(raw)
            except ValueError:
                raise ValueError(
                    f"{f.metadata['env']}={raw!r} is not a valid {type(f.default).__name__}"
                ) from None
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad value."""

        check(self)

    @property
    def min_event_ms(self) -> int:
        try:
            day = date.fromisoformat(self.min_event_time)
        except ValueError:
            raise ValueError(
                f"min_event_time {self.min_event_time!r} is not an ISO date (YYYY-MM-DD)"
            ) from None
        return int(datetime.combine(day, time(), UTC).timestamp() * 1000)

    @property
    def tag_definitions(self) -> tuple[TagDefinition, ...]:
        return parse_tags(self.tags)

    @property
    def alert_tag_names(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.alert_tags.split(",") if name.strip())

    @property
    def segment_feature_names(self) -> tuple[str, ...]:
        return tuple(name.strip() for name in self.segment_features.split(",") if name.strip())


def _boolean(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
        raise ValueError(f"{raw!r} is not a boolean")
    return text in ("true", "1", "yes", "on")


def describe_settings() -> list[tuple[str, str, str]]:
    """(env var, default, description) for every setting: for --help and docs/settings.md."""
    return [
        (
            f.metadata["env"],
            str(f.default).lower() if isinstance(f.default, bool) else str(f.default),
            f.metadata["doc"],
        )
        for f in fields(Settings)
    ]


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
        "redis_buckets",
    )
    for name in positive:
        if getattr(settings, name) < 1:
            raise ValueError(f"{name} must be at least 1")
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
