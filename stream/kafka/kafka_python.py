"""Kafka source and sink (kafka-python) behind the ``EventSource`` and ``Sink`` ports."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import Any

import kafka
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata, TopicPartition

from stream.errors import AssignmentFailed, DependencyError
from stream.ports import AssignmentListener, Committed, Partition, Record

log = logging.getLogger(__name__)
_FETCH_MAX_BYTES = 16 * 1024 * 1024


class _Rebalance(kafka.ConsumerRebalanceListener):  # type: ignore[misc]
    """Seeks each assigned partition to the offset our listener returns (from Redis).

    kafka-python logs and swallows exceptions raised in these callbacks; we keep the first one
    and re-raise it from ``poll`` so a failed claim cannot go unnoticed.
    """

    def __init__(self, consumer: kafka.KafkaConsumer, listener: AssignmentListener) -> None:
        self._consumer = consumer
        self._listener = listener
        self.error: BaseException | None = None

    def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        try:
            self._listener.revoked([Partition(tp.topic, tp.partition) for tp in revoked])
        except BaseException as exc:
            self.error = self.error or exc

    def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        try:
            by_partition = {Partition(tp.topic, tp.partition): tp for tp in assigned}
            resume = self._listener.assigned(list(by_partition))
            for partition, tp in by_partition.items():
                offset = resume.get(partition)
                if offset is None:
                    # Nothing stored in Redis: rebuild state from the start of the log.
                    self._consumer.seek_to_beginning(tp)
                else:
                    self._consumer.seek(tp, offset)
        except BaseException as exc:
            self.error = self.error or exc


class KafkaEventSource:
    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        *,
        session_timeout_ms: int = 10_000,
        max_poll_records: int = 2000,
        **consumer_options: Any,
    ) -> None:
        self.topic = topic
        try:
            self._consumer = kafka.KafkaConsumer(
                bootstrap_servers=bootstrap.split(","),
                group_id=group,
                client_id="segstream",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=session_timeout_ms,
                heartbeat_interval_ms=max(session_timeout_ms // 3, 100),
                max_poll_records=max_poll_records,
                # A fetch response may be as large as fetch_max_bytes (and one record batch past
                # any limit is still returned whole): the frame limit must exceed it, or a 1 MB
                # message logs "Invalid frame length" and is fetched again and again.
                fetch_max_bytes=_FETCH_MAX_BYTES,
                max_partition_fetch_bytes=2 * 1024 * 1024,
                receive_message_max_bytes=_FETCH_MAX_BYTES + 2 * 1024 * 1024,
                **consumer_options,
            )
        except KafkaError as exc:
            raise DependencyError(f"kafka: cannot connect to {bootstrap}: {exc}") from exc
        self._rebalance: _Rebalance | None = None

    def subscribe(self, listener: AssignmentListener) -> None:
        self._rebalance = _Rebalance(self._consumer, listener)
        self._consumer.subscribe([self.topic], listener=self._rebalance)

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        try:
            batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            raise DependencyError(f"kafka: poll failed: {exc}") from exc
        if self._rebalance is not None and self._rebalance.error is not None:
            error, self._rebalance.error = self._rebalance.error, None
            raise AssignmentFailed(f"partition assignment failed: {error}") from error
        records: list[Record] = []
        for tp, messages in batches.items():
            partition = Partition(tp.topic, tp.partition)
            records.extend(
                Record(partition, m.offset, m.key, m.value, m.timestamp) for m in messages
            )
        return records

    def pause(self, partitions: Collection[Partition]) -> None:
        self._consumer.pause(*(TopicPartition(p.topic, p.index) for p in partitions))

    def commit(
        self, next_offsets: Mapping[Partition, int], metadata: Mapping[Partition, str] | None = None
    ) -> bool:
        notes = metadata or {}
        offsets = {
            TopicPartition(p.topic, p.index): OffsetAndMetadata(offset, notes.get(p, ""), -1)
            for p, offset in next_offsets.items()
        }
        try:
            self._consumer.commit(offsets)
        except KafkaError as exc:
            # Redis holds the offsets we resume from; the broker's copy only feeds lag tools.
            log.warning("kafka: offset commit failed (progress is safe in Redis): %s", exc)
            return False
        return True

    def committed(self) -> dict[Partition, Committed]:
        found: dict[Partition, Committed] = {}
        indexes = self._consumer.partitions_for_topic(self.topic) or set()
        for partition in (Partition(self.topic, i) for i in sorted(indexes)):
            try:
                last = self._consumer.committed(
                    TopicPartition(partition.topic, partition.index),
                    metadata=True,
                    timeout_ms=15_000,
                )
            except KafkaError as exc:
                raise DependencyError(
                    f"kafka: reading the committed offset of {partition} failed: {exc}"
                ) from exc
            if last is not None and last.offset >= 0:
                found[partition] = Committed(last.offset, last.metadata or "")
        return found

    def lag(self) -> dict[Partition, int]:
        lags: dict[Partition, int] = {}
        for tp in self._consumer.assignment():
            end = self._consumer.highwater(tp)
            position = self._consumer.position(tp, timeout_ms=0) if end is not None else None
            if end is not None and position is not None:
                lags[Partition(tp.topic, tp.partition)] = max(end - position, 0)
        return lags

    def close(self) -> None:
        self._consumer.close(autocommit=False)


class KafkaSink:
    """Idempotent producer with acks=all; ``flush`` raises if any send of the batch failed."""

    def __init__(self, bootstrap: str, **producer_options: Any) -> None:
        options: dict[str, Any] = {
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 5,
            "client_id": "segstream",
        }
        options.update(producer_options)
        try:
            self._producer = kafka.KafkaProducer(bootstrap_servers=bootstrap.split(","), **options)
        except KafkaError as exc:
            raise DependencyError(f"kafka: cannot connect to {bootstrap}: {exc}") from exc
        self._pending: list[Any] = []

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        try:
            sent = self._producer.send(topic, key=key, value=value, partition=partition)
        except KafkaError as exc:
            raise DependencyError(f"kafka: send to {topic} failed: {exc}") from exc
        self._pending.append(sent)

    def partitions(self, topic: str) -> int:
        try:
            indexes = self._producer.partitions_for(topic)
        except KafkaError as exc:
            raise DependencyError(f"kafka: no metadata for topic {topic}: {exc}") from exc
        if not indexes:
            raise DependencyError(f"kafka: topic {topic} does not exist")
        return len(indexes)

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        try:
            self._producer.flush()
            for future in pending:
                future.get(timeout=0)
        except KafkaError as exc:
            raise DependencyError(f"kafka: delivery failed: {exc}") from exc

    def close(self) -> None:
        self._producer.close()
