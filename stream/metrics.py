"""Every metric segstream exports, defined against an injected registry.

Names follow Prometheus conventions: ``segstream_`` prefix, base units, ``_total`` counters.
No label ever carries a user, event or session id. The README's "Metrics" table lists them.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from operators.events import EVENT_TYPES, REJECTION_REASONS
from stream.errors import DependencyError
from stream.outputs import Tally
from stream.partition_metrics import PartitionMetrics
from stream.ports import Partition, Record

_BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)
# End-to-end latency (now - record timestamp): the target is seconds, an incident is minutes.
_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)
_REDIS_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
STAGES = ("poll", "decode", "load", "operators", "produce", "save", "commit", "train")
REDIS_OPERATIONS = (
    "claim",
    "load",
    "load_pending",
    "due_users",
    "scan_users",
    "save",
    "watermark",
    "next_offset",
    "segment_sizes",
    "model_load",
    "model_save",
    "lease",
)
INVALID_TYPE = "invalid"  # events_consumed's type for records that did not decode


class Metrics(PartitionMetrics):
    def __init__(
        self,
        registry: CollectorRegistry,
        version: str,
        *,
        input_topic: str = "",
        output_topics: Sequence[str] = (),
        tags: Sequence[str] = (),
        predictive_tags: Sequence[str] = (),
        alert_tags: Sequence[str] = (),
    ) -> None:
        super().__init__(registry, predictive_tags)
        self.registry = registry
        self.version = version
        self.events_consumed = Counter(
            "segstream_events_consumed",
            "Records read from the input topic, by event type ('invalid': did not decode).",
            ["topic", "type"],
            registry=registry,
        )
        self.records_produced = Counter(
            "segstream_records_produced",
            "Records delivered (acknowledged) to an output topic: changes, alerts, dead letters.",
            ["topic"],
            registry=registry,
        )
        self.events_in_progress = Gauge(
            "segstream_events_in_progress",
            "Records of the batch being processed now.",
            registry=registry,
        )
        self.errors = Counter(
            "segstream_errors",
            "Failed attempts of a stage (Kafka or Redis unavailable...), retried or fatal.",
            ["stage", "reason"],
            registry=registry,
        )
        self.stage_duration = Histogram(
            "segstream_stage_duration_seconds",
            "Time spent in each stage of a batch.",
            ["stage"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.end_to_end_latency = Histogram(
            "segstream_end_to_end_latency_seconds",
            "From a record's Kafka timestamp to its batch being saved and committed.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.redis_duration = Histogram(
            "segstream_redis_operation_duration_seconds",
            "Latency of Redis operations.",
            ["operation"],
            buckets=_REDIS_BUCKETS,
            registry=registry,
        )
        self.redis_errors = Counter(
            "segstream_redis_errors", "Failed Redis operations.", ["operation"], registry=registry
        )
        self.events_processed = Counter(
            "segstream_events_processed",
            "Valid events applied to user state, by event type.",
            ["type"],
            registry=registry,
        )
        self.events_dead_lettered = Counter(
            "segstream_events_dead_lettered",
            "Records sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.events_duplicate = Counter(
            "segstream_events_duplicate",
            "Valid events skipped because the user's recent events already had their event_id.",
            registry=registry,
        )
        self.events_late = Counter(
            "segstream_events_late",
            "Events older than their partition's watermark, sent to the late topic unapplied.",
            registry=registry,
        )
        self.users_rescored = Counter(
            "segstream_users_rescored",
            "Re-scorings of users whose evaluation fell due without an event (event time).",
            registry=registry,
        )
        self.users_removed = Counter(
            "segstream_users_removed",
            "Users whose state was removed (reason: expired, or erased on request).",
            ["reason"],
            registry=registry,
        )
        self.segment_changes = Counter(
            "segstream_segment_changes", "Segment change events published.", registry=registry
        )
        self.segment_transitions = Counter(
            "segstream_segment_transitions",
            "Users moving between segments (from 'none' on a first assignment).",
            ["from", "to"],
            registry=registry,
        )
        self.tag_transitions = Counter(
            "segstream_tag_transitions",
            "Users entering or leaving a tag (direction: enter or exit).",
            ["tag", "direction"],
            registry=registry,
        )
        self.alerts = Counter(
            "segstream_alerts",
            "Alerts published (a user entered an alerting tag such as churn_risk).",
            ["tag"],
            registry=registry,
        )
        self.batch_duration = Histogram(
            "segstream_batch_duration_seconds",
            "Time to process one batch, from poll to Kafka commit.",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "segstream_batch_records",
            "Records per processed batch.",
            buckets=_SIZE_BUCKETS,
            registry=registry,
        )
        self.last_batch = Gauge(
            "segstream_last_batch_timestamp_seconds",
            "Wall-clock time the last batch finished (liveness).",
            registry=registry,
        )
        self.build_info = Gauge(
            "segstream_build_info",
            "Always 1: the version and the segment model version used.",
            ["version", "model_version"],
            registry=registry,
        )
        self._model_version_label = "0"
        self.build_info.labels(version=version, model_version="0").set(1)
        # Create every labelled child up front: series exist at 0 before the first event.
        for event_type in EVENT_TYPES:
            self.events_processed.labels(type=event_type)
            if input_topic:
                self.events_consumed.labels(topic=input_topic, type=event_type)
        if input_topic:
            self.events_consumed.labels(topic=input_topic, type=INVALID_TYPE)
        for topic in output_topics:
            self.records_produced.labels(topic=topic)
        for reason in REJECTION_REASONS:
            self.events_dead_lettered.labels(reason=reason)
        for stage in STAGES:
            self.stage_duration.labels(stage=stage)
        for operation in REDIS_OPERATIONS:
            self.redis_duration.labels(operation=operation)
            self.redis_errors.labels(operation=operation)
        for tag in tags:
            for direction in ("enter", "exit"):
                self.tag_transitions.labels(tag=tag, direction=direction)
        for tag in alert_tags:
            self.alerts.labels(tag=tag)

    def set_model_version(self, version: int) -> None:
        """The segment model in use: ``model_version`` and ``build_info``'s label."""
        self.model_version.set(version)
        if str(version) != self._model_version_label:
            self.build_info.remove(self.version, self._model_version_label)
            self._model_version_label = str(version)
            self.build_info.labels(version=self.version, model_version=str(version)).set(1)

    # -- observations the loop makes --------------------------------------------------------

    @contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        """Time a stage of the batch (``stage_duration``)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_done(stage, started)

    def stage_done(self, stage: str, started: float) -> None:
        """A stage that began at ``started`` (``time.perf_counter()``) has ended."""
        self.stage_duration.labels(stage=stage).observe(time.perf_counter() - started)

    def saved(
        self, records: Iterable[Record], partitions: Collection[Partition], now_s: float
    ) -> None:
        """End-to-end latency and freshness of the records of ``partitions``, now saved."""
        newest: dict[Partition, int] = {}
        for record in records:
            if record.partition in partitions and record.timestamp_ms > 0:
                newest[record.partition] = max(newest.get(record.partition, 0), record.timestamp_ms)
                self.end_to_end_latency.observe(max(now_s - record.timestamp_ms / 1000, 0.0))
        for partition, timestamp_ms in newest.items():
            self.last_event_timestamp.labels(partition=str(partition.index)).set(
                timestamp_ms / 1000
            )

    def dead_lettered(self) -> dict[str, int]:
        """Records dead-lettered so far, by reason (those with any)."""
        counts = {
            r: self.registry.get_sample_value("segstream_events_dead_lettered_total", {"reason": r})
            or 0
            for r in REJECTION_REASONS
        }
        return {r: int(n) for r, n in counts.items() if n}

    def count(self, tally: Tally) -> None:
        """A saved batch's per-event figures (never before the save: a retry counts once)."""
        for (topic, event_type), n in tally.consumed.items():
            self.events_consumed.labels(topic=topic, type=event_type).inc(n)
        for event_type, n in tally.processed.items():
            self.events_processed.labels(type=event_type).inc(n)
        for reason, n in tally.dead_lettered.items():
            self.events_dead_lettered.labels(reason=reason).inc(n)
        for (before, after), n in tally.segment_moves.items():
            self.segment_transitions.labels(**{"from": before, "to": after}).inc(n)
        for (tag, direction), n in tally.tag_moves.items():
            self.tag_transitions.labels(tag=tag, direction=direction).inc(n)
        for tag, n in tally.alerts.items():
            self.alerts.labels(tag=tag).inc(n)
        self.events_duplicate.inc(tally.duplicates)
        self.events_late.inc(tally.late)
        self.users_rescored.inc(tally.rescored)
        for reason, n in tally.removed.items():
            self.users_removed.labels(reason=reason).inc(n)
        self.segment_changes.inc(tally.changes)
        if tally.rescoring_errors:
            self.errors.labels(stage="operators", reason="rescoring_error").inc(
                tally.rescoring_errors
            )

    def failed(self, stage: str, exc: DependencyError) -> None:
        """A stage failed; the reason is bounded: the service and the error's class."""
        service = str(exc).split(":", 1)[0]
        cause = type(exc.__cause__ if exc.__cause__ is not None else exc).__name__
        reason = f"{service if service in ('kafka', 'redis') else 'unknown'}:{cause}"
        self.errors.labels(stage=stage, reason=reason).inc()
