"""Ports wrapped with metrics: deliveries per topic, and the state and model stores' latency.

The wrappers time every call of the port they wrap (the Redis stores in production) and count
the ones that fail with a ``DependencyError``; they change nothing else.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from operators.segments import SegmentSnapshot
from operators.tags import TagModel
from stream.errors import DependencyError
from stream.metrics import Metrics
from stream.ports import ModelStore, Partition, PartitionWrite, Sink, StateStore

T = TypeVar("T")


def _timed(metrics: Metrics, operation: str, call: Callable[[], T]) -> T:
    started = time.perf_counter()
    try:
        return call()
    except DependencyError:
        metrics.redis_errors.labels(operation=operation).inc()
        raise
    finally:
        metrics.redis_duration.labels(operation=operation).observe(time.perf_counter() - started)


class MeteredSink:
    """Counts records per topic once a flush has confirmed their delivery."""

    def __init__(self, sink: Sink, metrics: Metrics) -> None:
        self._sink = sink
        self._metrics = metrics
        self._pending: Counter[str] = Counter()

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        self._sink.send(topic, key, value, partition)
        self._pending[topic] += 1

    def partitions(self, topic: str) -> int:
        return self._sink.partitions(topic)

    def flush(self) -> None:
        pending, self._pending = self._pending, Counter()
        self._sink.flush()
        for topic, count in pending.items():
            self._metrics.records_produced.labels(topic=topic).inc(count)

    def close(self) -> None:
        self._sink.close()


class MeteredStateStore:
    def __init__(self, store: StateStore, metrics: Metrics) -> None:
        self.store = store
        self._metrics = metrics

    def claim(self, partition: Partition) -> int | None:
        return _timed(self._metrics, "claim", lambda: self.store.claim(partition))

    def load(self, users: Mapping[Partition, Collection[str]]) -> dict[Partition, dict[str, bytes]]:
        return _timed(self._metrics, "load", lambda: self.store.load(users))

    def watermark(self, partition: Partition) -> int:
        return _timed(self._metrics, "watermark", lambda: self.store.watermark(partition))

    def due_users(self, partition: Partition, until_ms: int, limit: int) -> list[str]:
        return _timed(
            self._metrics, "due_users", lambda: self.store.due_users(partition, until_ms, limit)
        )

    def scan_users(
        self, partition: Partition, cursor: int, count: int
    ) -> tuple[int, dict[str, bytes]]:
        return _timed(
            self._metrics, "scan_users", lambda: self.store.scan_users(partition, cursor, count)
        )

    def load_pending(
        self,
        users: Mapping[Partition, Collection[str]],
    ) -> dict[Partition, dict[str, bytes]]:
        return _timed(self._metrics, "load_pending", lambda: self.store.load_pending(users))

    def segment_sizes(self, partitions: Collection[Partition]) -> dict[int, int]:
        return _timed(self._metrics, "segment_sizes", lambda: self.store.segment_sizes(partitions))

    def erasures(self, partition: Partition) -> list[bytes]:
        return _timed(self._metrics, "erasures", lambda: self.store.erasures(partition))

    def save(self, writes: Mapping[Partition, PartitionWrite]) -> None:
        _timed(self._metrics, "save", lambda: self.store.save(writes))

    def next_offset(self, partition: Partition) -> int | None:
        return _timed(self._metrics, "next_offset", lambda: self.store.next_offset(partition))

    def close(self) -> None:
        self.store.close()


class MeteredModelStore:
    def __init__(self, store: ModelStore, metrics: Metrics) -> None:
        self.store = store
        self._metrics = metrics

    def load(self) -> tuple[SegmentSnapshot | None, bytes | None]:
        return _timed(self._metrics, "model_load", self.store.load)

    def save(self, snapshot: SegmentSnapshot, trainer_state: bytes | None) -> None:
        _timed(self._metrics, "model_save", lambda: self.store.save(snapshot, trainer_state))

    def load_tags(self) -> dict[str, TagModel]:
        return _timed(self._metrics, "model_load", self.store.load_tags)

    def save_tags(self, models: Mapping[str, TagModel], tag_trainers: bytes | None = None) -> None:
        _timed(self._metrics, "model_save", lambda: self.store.save_tags(models, tag_trainers))

    def load_snapshot(self) -> SegmentSnapshot | None:
        return _timed(self._metrics, "model_load", self.store.load_snapshot)

    def load_tag_trainers(self) -> bytes | None:
        return _timed(self._metrics, "model_load", self.store.load_tag_trainers)

    def load_lineage(self) -> dict[int, dict[str, Any]]:
        return _timed(self._metrics, "model_load", self.store.load_lineage)

    def save_lineage(self, records: Mapping[int, Mapping[str, Any]]) -> None:
        _timed(self._metrics, "model_save", lambda: self.store.save_lineage(records))

    def load_segment_names(self) -> dict[int, str]:
        return _timed(self._metrics, "model_load", self.store.load_segment_names)

    def hold_trainer_lease(self, token: str, lease_ms: int) -> bool:
        return _timed(
            self._metrics, "lease", lambda: self.store.hold_trainer_lease(token, lease_ms)
        )
