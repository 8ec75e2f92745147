"""Every metric segstream exports, defined against an injected registry.

Names follow Prometheus conventions: ``segstream_`` prefix, base units, ``_total`` counters.
No label ever carries a user, event or session id. The README's "Metrics" table lists them.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from operators.events import EVENT_TYPES, REJECTION_REASONS

_BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000)


class Metrics:
    def __init__(self, registry: CollectorRegistry, version: str) -> None:
        self.registry = registry
        self.events_consumed = Counter(
            "segstream_events_consumed", "Records read from the input topic.", ["topic"],
            registry=registry)
        self.events_processed = Counter(
            "segstream_events_processed", "Valid events applied to user state, by event type.",
            ["type"], registry=registry)
        self.events_dead_lettered = Counter(
            "segstream_events_dead_lettered", "Records sent to the dead-letter topic, by reason.",
            ["reason"], registry=registry)
        self.events_duplicate = Counter(
            "segstream_events_duplicate",
            "Valid events skipped because the user's recent events already had their event_id.",
            registry=registry)
        self.events_late = Counter(
            "segstream_events_late",
            "Events older than their partition's watermark, sent to the late topic unapplied.",
            registry=registry)
        self.users_rescored = Counter(
            "segstream_users_rescored",
            "Re-scorings of users whose evaluation fell due without an event (event time).",
            registry=registry)
        self.segment_changes = Counter(
            "segstream_segment_changes", "Segment change events published.", registry=registry)
        self.segment_transitions = Counter(
            "segstream_segment_transitions",
            "Users moving between segments (from 'none' on a first assignment).",
            ["from", "to"], registry=registry)
        self.tag_transitions = Counter(
            "segstream_tag_transitions",
            "Users entering or leaving a tag (direction: enter or exit).", ["tag", "direction"],
            registry=registry)
        self.alerts = Counter(
            "segstream_alerts",
            "Alerts published (a user entered an alerting tag such as churn_risk).", ["tag"],
            registry=registry)
        self.labels_resolved = Counter(
            "segstream_labels_resolved",
            "Delayed labels of predictive tags resolved (value 1: the outcome happened).",
            ["tag", "value"], registry=registry)
        self.tag_auc = Gauge(
            "segstream_tag_auc",
            "Exact ROC AUC of each predictive tag, prequential, over its last 5000 labels.",
            ["tag"], registry=registry)
        self.tag_log_loss = Gauge(
            "segstream_tag_log_loss",
            "Log-loss of each predictive tag, prequential, over its last 5000 labels.",
            ["tag"], registry=registry)
        self.tag_ready = Gauge(
            "segstream_tag_ready",
            "1 once a predictive tag has enough labels to score users, else 0.", ["tag"],
            registry=registry)
        self.segment_users = Gauge(
            "segstream_segment_users",
            "Users per segment in this consumer's partitions, updated at each model snapshot.",
            ["segment"], registry=registry)
        self.segment_volatility = Gauge(
            "segstream_segment_volatility",
            "(Enters + exits) / users of each segment over the last snapshot window.",
            ["segment"], registry=registry)
        self.batch_duration = Histogram(
            "segstream_batch_duration_seconds",
            "Time to process one batch, from poll to Kafka commit.", buckets=_BATCH_BUCKETS,
            registry=registry)
        self.batch_size = Histogram(
            "segstream_batch_records", "Records per processed batch.", buckets=_SIZE_BUCKETS,
            registry=registry)
        self.partitions_lost = Counter(
            "segstream_partitions_fenced",
            "Partition batches dropped because another consumer took the partition.",
            registry=registry)
        self.assigned_partitions = Gauge(
            "segstream_assigned_partitions", "Input partitions this consumer owns.",
            registry=registry)
        self.model_snapshots = Counter(
            "segstream_model_snapshots_published", "Segment model snapshots published.",
            registry=registry)
        self.model_version = Gauge(
            "segstream_model_version", "Version of the segment model used for scoring.",
            registry=registry)
        self.trainer = Gauge(
            "segstream_trainer", "1 while this process holds the trainer lease (trains and "
            "publishes the models), else 0.", registry=registry)
        self.last_batch = Gauge(
            "segstream_last_batch_timestamp_seconds",
            "Wall-clock time the last batch finished (liveness).", registry=registry)
        self.build_info = Info("segstream_build", "segstream version.", registry=registry)
        self.build_info.info({"version": version})
        # Create every labelled child up front: series exist at 0 before the first event.
        for event_type in EVENT_TYPES:
            self.events_processed.labels(type=event_type)
        for reason in REJECTION_REASONS:
            self.events_dead_lettered.labels(reason=reason)
