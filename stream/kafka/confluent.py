"""Kafka source and sink on confluent-kafka (librdkafka) behind the ``EventSource`` and ``Sink``
ports: the same contract as ``stream.kafka.kafka_python`` (kafka-python), at a fraction of its
CPU per record (``bench/throughput.py``; docs/benchmark.md). librdkafka fetches and produces on
its own threads, so the Python loop only copies out what already arrived.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from stream.errors import AssignmentFailed, DependencyError
from stream.ports import AssignmentListener, Committed, Partition, Record

T = TypeVar("T")

log = logging.getLogger(__name__)
_FETCH_MAX_BYTES = 16 * 1024 * 1024
_MESSAGE_MAX_BYTES = 1024 * 1024  # as kafka-python's max_request_size; a dead letter fits


class ConfluentEventSource:
    """A consumer-group member that resumes each assigned partition where the listener says
    (from Redis), never from the broker's committed offset; offsets are committed by hand."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        *,
        session_timeout_ms: int = 10_000,
        **consumer_options: Any,
    ) -> None:
        self.topic = topic
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": "segstream",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": session_timeout_ms,
            "heartbeat.interval.ms": max(session_timeout_ms // 3, 100),
            # librdkafka's default (1 s) idles a partition's fetcher after each full queue; with
            # it a bare loop over a topic flips between ~150k and ~1M records/s from run to run.
            "fetch.queue.backoff.ms": 10,
            "queued.max.messages.kbytes": 32 * 1024,
            "fetch.max.bytes": _FETCH_MAX_BYTES,
            "max.partition.fetch.bytes": 2 * 1024 * 1024,
            "receive.message.max.bytes": _FETCH_MAX_BYTES + 2 * 1024 * 1024,
            "error_cb": self._on_error,
        }
        config.update(consumer_options)
        self._consumer = _create(Consumer, config, "consumer")
        self._listener: AssignmentListener | None = None
        self._callback_error: BaseException | None = None
        self._fatal: KafkaError | None = None
        self._partitions: dict[int, Partition] = {}

    def _on_error(self, error: KafkaError) -> None:
        # librdkafka reports transient faults (a broker restart) here and recovers by itself.
        if error.fatal():
            self._fatal = error
        else:
            log.warning("kafka: %s", error)

    def subscribe(self, listener: AssignmentListener) -> None:
        self._listener = listener
        self._consumer.subscribe([self.topic], on_assign=self._assigned, on_revoke=self._revoked)

    def _assigned(self, consumer: Consumer, assigned: list[TopicPartition]) -> None:
        # Exceptions raised here would surface from poll inside librdkafka's callback; kept and
        # re-raised by ``poll`` instead, as the kafka-python source does.
        try:
            assert self._listener is not None
            by_partition = {Partition(tp.topic, tp.partition): tp for tp in assigned}
            resume = self._listener.assigned(list(by_partition))
            for partition, tp in by_partition.items():
                offset = resume.get(partition)
                # Nothing stored in Redis: rebuild state from the start of the log.
                tp.offset = OFFSET_BEGINNING if offset is None else offset
            consumer.assign(assigned)
        except BaseException as exc:
            self._callback_error = self._callback_error or exc
            consumer.assign(assigned)  # the error makes poll raise; the process exits

    def _revoked(self, consumer: Consumer, revoked: list[TopicPartition]) -> None:
        try:
            assert self._listener is not None
            self._listener.revoked([Partition(tp.topic, tp.partition) for tp in revoked])
        except BaseException as exc:
            self._callback_error = self._callback_error or exc
        consumer.unassign()

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        try:
            # What has arrived, at once: ``consume`` waits for a full batch or the timeout, so
            # at a modest rate a batch would wait for records only to fill up. Only an empty
            # queue waits, for the first record.
            messages = self._consumer.consume(num_messages=max_records, timeout=0)
            if not messages:
                messages = self._consumer.consume(num_messages=1, timeout=timeout_s)
                if messages and max_records > 1:
                    messages += self._consumer.consume(num_messages=max_records - 1, timeout=0)
        except (KafkaException, RuntimeError) as exc:
            raise DependencyError(f"kafka: poll failed: {exc}") from exc
        if self._callback_error is not None:
            error, self._callback_error = self._callback_error, None
            raise AssignmentFailed(f"partition assignment failed: {error}") from error
        if self._fatal is not None:
            raise DependencyError(f"kafka: fatal client error: {self._fatal}")
        return self._records(messages)

    def _records(self, messages: list[Message]) -> list[Record]:
        records: list[Record] = []
        partitions = self._partitions
        for m in messages:
            if m.error() is not None:
                self._message_error(m)
                continue
            index = m.partition()
            partition = partitions.get(index)  # type: ignore[arg-type]
            if partition is None:
                partition = Partition(self.topic, index)  # type: ignore[arg-type]
                partitions[index] = partition  # type: ignore[index]
            value = m.value()
            records.append(
                Record(
                    partition,
                    m.offset(),  # type: ignore[arg-type]
                    m.key(),
                    b"" if value is None else value,
                    m.timestamp()[1],
                )
            )
        return records

    def _message_error(self, message: Message) -> None:
        error = message.error()
        assert error is not None
        if error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise DependencyError(f"kafka: fatal consumer error: {error}")
        log.warning("kafka: consumer error (retried by the client): %s", error)

    def pause(self, partitions: Collection[Partition]) -> None:
        self._consumer.pause([TopicPartition(p.topic, p.index) for p in partitions])

    def commit(
        self, next_offsets: Mapping[Partition, int], metadata: Mapping[Partition, str] | None = None
    ) -> bool:
        notes = metadata or {}
        offsets = [
            TopicPartition(p.topic, p.index, offset, metadata=notes[p])
            if notes.get(p)
            else TopicPartition(p.topic, p.index, offset)
            for p, offset in next_offsets.items()
        ]
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Redis holds the offsets we resume from; the broker's copy only feeds lag tools.
            log.warning("kafka: offset commit failed (progress is safe in Redis): %s", exc)
            return False
        return True

    def committed(self) -> dict[Partition, Committed]:
        try:
            topics = self._consumer.list_topics(self.topic, timeout=15).topics
            indexes = sorted(topics[self.topic].partitions) if self.topic in topics else []
            found = self._consumer.committed(
                [TopicPartition(self.topic, i) for i in indexes], timeout=15
            )
        except KafkaException as exc:
            raise DependencyError(f"kafka: reading committed offsets failed: {exc}") from exc
        # A partition's error is not "nothing committed": that would rebuild nothing and publish
        # a lost partition's outputs again under its old epoch.
        failed = [tp for tp in found if tp.error is not None]
        if failed:
            raise DependencyError(f"kafka: reading committed offsets failed: {failed[0].error}")
        return {
            Partition(tp.topic, tp.partition): Committed(tp.offset, tp.metadata or "")
            for tp in found
            if tp.offset >= 0
        }

    def lag(self) -> dict[Partition, int]:
        lags: dict[Partition, int] = {}
        assigned = self._consumer.assignment()
        if not assigned:
            return lags
        for tp in self._consumer.position(assigned):
            marks = self._consumer.get_watermark_offsets(tp, cached=True)
            if marks is None or marks[1] < 0 or tp.offset < 0:
                continue  # nothing fetched yet: not known
            lags[Partition(tp.topic, tp.partition)] = max(marks[1] - tp.offset, 0)
        return lags

    def close(self) -> None:
        self._consumer.close()


class ConfluentSink:
    """Idempotent producer with acks=all; ``flush`` raises if any send of the batch failed.

    Only failed deliveries call back (``delivery.report.only.error``): a delivered record costs
    no Python call.
    """

    def __init__(self, bootstrap: str, *, bulk: bool = False, **producer_options: Any) -> None:
        config: dict[str, Any] = {
            "bootstrap.servers": bootstrap,
            "client.id": "segstream",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20 if bulk else 5,
            "batch.size": 256 * 1024 if bulk else 64 * 1024,
            "message.max.bytes": _MESSAGE_MAX_BYTES,
            "compression.type": "none",
            # Java's (and kafka-python's) partitioner: a user's records land in the same
            # partition whichever client wrote them, which the compacted membership topic needs.
            "partitioner": "murmur2_random",
            "delivery.report.only.error": True,
            "on_delivery": self._delivered,
            "error_cb": self._on_error,
        }
        config.update(producer_options)
        self._producer = _create(Producer, config, "producer")
        self._failed: list[str] = []

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failed.append(f"{message.topic()}: {error}")

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._failed.append(f"fatal: {error}")
        else:
            log.warning("kafka: %s", error)

    def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        while True:
            try:
                if partition is None:
                    self._producer.produce(topic, value, key)
                else:
                    self._producer.produce(topic, value, key, partition=partition)
                return
            except BufferError:  # the client's queue is full: let deliveries drain
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise DependencyError(f"kafka: send to {topic} failed: {exc}") from exc

    def partitions(self, topic: str) -> int:
        try:
            found = self._producer.list_topics(topic, timeout=15).topics.get(topic)
        except KafkaException as exc:
            raise DependencyError(f"kafka: no metadata for topic {topic}: {exc}") from exc
        if found is None or found.error is not None or not found.partitions:
            raise DependencyError(f"kafka: topic {topic} does not exist")
        return len(found.partitions)

    def flush(self) -> None:
        left = self._producer.flush(60)
        failed, self._failed = self._failed, []
        if failed:
            raise DependencyError(f"kafka: delivery failed: {failed[0]} ({len(failed)} in all)")
        if left:
            raise DependencyError(f"kafka: {left} records not acknowledged within 60 s")

    def close(self) -> None:
        self._producer.flush(30)


def _create(client: Callable[[dict[str, Any]], T], config: dict[str, Any], what: str) -> T:
    try:
        return client(config)
    except KafkaException as exc:
        raise DependencyError(
            f"kafka: cannot create a {what} for {config['bootstrap.servers']}: {exc}"
        ) from exc
