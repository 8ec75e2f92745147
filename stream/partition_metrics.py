"""The metrics of partition ownership: assignments, lag, freshness, offset commits, fencing and
state loss. The base of ``stream.metrics.Metrics`` (under ``stream.model_metrics``'s)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from contextlib import suppress

from prometheus_client import CollectorRegistry, Counter, Gauge

from stream.model_metrics import ModelMetrics
from stream.ports import Partition


class PartitionMetrics(ModelMetrics):
    def __init__(self, registry: CollectorRegistry, predictive_tags: Sequence[str]) -> None:
        super().__init__(registry, predictive_tags)
        self.last_event_timestamp = Gauge(
            "segstream_last_event_timestamp_seconds",
            "Kafka timestamp of the last record processed, per input partition (freshness).",
            ["partition"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "segstream_consumer_lag_records",
            "Records between this consumer's position and the partition's end, per partition.",
            ["partition"],
            registry=registry,
        )
        self.rebalances = Counter(
            "segstream_rebalances",
            "Partition assignment changes (kind: assigned or revoked).",
            ["kind"],
            registry=registry,
        )
        self.offset_commits = Counter(
            "segstream_offset_commits",
            "Offset commits to Kafka (result: success or failure).",
            ["result"],
            registry=registry,
        )
        self.partitions_lost = Counter(
            "segstream_partitions_fenced",
            "Partition batches dropped because another consumer took the partition.",
            registry=registry,
        )
        self.state_lost = Counter(
            "segstream_state_lost",
            "Partitions whose owner token or offset vanished from Redis (the state store lost "
            "data): the process exits and rebuilds them from the log.",
            registry=registry,
        )
        self.rebuilt_events = Counter(
            "segstream_rebuilt_records",
            "Input records re-applied to rebuild lost state, below the offset whose outputs "
            "were already published: nothing is published or counted for them.",
            registry=registry,
        )
        self.assigned_partitions = Gauge(
            "segstream_assigned_partitions",
            "Input partitions this consumer owns.",
            registry=registry,
        )
        for kind in ("assigned", "revoked"):
            self.rebalances.labels(kind=kind)
        for result in ("success", "failure"):
            self.offset_commits.labels(result=result)

    def lag(self, lags: Mapping[Partition, int], owned: Collection[Partition]) -> None:
        for partition, lag in lags.items():
            if partition in owned:
                self.consumer_lag.labels(partition=str(partition.index)).set(lag)

    def rebalanced(self, kind: str, partitions: Collection[Partition], owned: int) -> None:
        """Partitions were assigned or revoked; a revoked partition's series are dropped."""
        self.assigned_partitions.set(owned)
        self.rebalances.labels(kind=kind).inc()
        if kind == "revoked":
            for partition in partitions:
                for gauge in (self.consumer_lag, self.last_event_timestamp):
                    with suppress(KeyError):  # never set: no series to remove
                        gauge.remove(str(partition.index))
