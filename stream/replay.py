"""``segstream replay``: feed a history file through the service's own loop, in event time.

By default on the in-memory twins (nothing to start); with ``kafka=True`` the events are
produced to the configured input topic and consumed from it with the real Kafka and Redis
parts, exactly as ``segstream serve`` would. Either way every event goes through the same
operators, and at the end event time is advanced to ``until_ms`` so users still due are
re-scored (``Processor.sweep_until``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from stream.feeds.simulator import encode
from stream.loop.processor import Processor
from stream.ports import Partition
from stream.settings import Settings
from stream.twins.broker import InMemoryBroker
from stream.wiring import Parts, build_processor, in_memory_parts


@dataclass(slots=True)
class Replayed:
    processor: Processor
    parts: Parts
    events: int


def replay_events(
    settings: Settings,
    events: list[dict[str, Any]],
    *,
    until_ms: int | None = None,
    kafka: bool = False,
    progress: Callable[[int, int], None] | None = None,
    checkpoints: Sequence[int] = (),
    at_checkpoint: Callable[[Replayed, int], None] | None = None,
    keep_output: Callable[[str, bytes | None], bool] | None = None,
    segment_training: bool = True,
) -> Replayed:
    """Run ``events`` (in the input schema, event-time order) through a processor.

    In memory, ``at_checkpoint(replayed, ms)`` is called at each of ``checkpoints`` (event
    times, ascending) once every event before it has been processed and none after it: the
    evaluation looks at the models and the users as they stood at that moment;
    ``keep_output(topic, value)`` says which output records the broker holds (all by default);
    and ``segment_training`` off trains no segment model (the tags do not read one).
    """
    if kafka:
        if checkpoints:
            raise ValueError("checkpoints need the in-memory replay")
        return _replay_on_kafka(settings, events, until_ms, progress)
    keep = None
    if keep_output is not None:
        wanted = keep_output

        def keep(topic: str, value: bytes | None) -> bool:
            return topic == settings.input_topic or wanted(topic, value)

    broker = InMemoryBroker(keep=keep)
    parts = in_memory_parts(settings, broker)
    processor = build_processor(settings, parts, segment_training=segment_training)
    replayed = Replayed(processor, parts, len(events))
    done = fed = 0
    for stop in [*checkpoints, None]:
        while fed < len(events) and (stop is None or int(events[fed]["ts"]) < stop):
            broker.append(settings.input_topic, *encode(events[fed]))
            fed += 1
        while count := replayed.processor.run_once():
            done += count
            if progress:
                progress(done, len(events))
        if stop is not None and at_checkpoint is not None:
            at_checkpoint(replayed, stop)
    if until_ms is not None:
        replayed.processor.sweep_until(until_ms)
    return replayed


def _replay_on_kafka(
    settings: Settings,
    events: list[dict[str, Any]],
    until_ms: int | None,
    progress: Callable[[int, int], None] | None,
) -> Replayed:
    from stream.wiring import kafka_redis_parts, kafka_sink

    # Idempotent: retries must not reorder a partition (late events are dropped).
    producer = kafka_sink(settings, bulk=True)
    try:
        for event in events:
            producer.send(settings.input_topic, *encode(event))
        producer.flush()
    finally:
        producer.close()
    ends = _end_offsets(settings)
    parts = kafka_redis_parts(settings)
    processor = build_processor(settings, parts)
    done = 0
    while any((parts.state_store.next_offset(p) or 0) < end for p, end in ends.items() if end):
        done += processor.run_once()
        if progress:
            progress(min(done, len(events)), len(events))
    if until_ms is not None:
        processor.sweep_until(until_ms)
    return Replayed(processor, parts, len(events))


def _end_offsets(settings: Settings) -> dict[Partition, int]:
    from kafka import KafkaConsumer, TopicPartition

    from stream.connections import kafka_python_options

    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap.split(","), **kafka_python_options(settings)
    )
    try:
        indexes = consumer.partitions_for_topic(settings.input_topic) or set()
        ends = consumer.end_offsets([TopicPartition(settings.input_topic, i) for i in indexes])
        return {Partition(tp.topic, tp.partition): end for tp, end in ends.items()}
    finally:
        consumer.close()


def progress_bar(stream: TextIO | None = None, width: int = 30) -> Callable[[int, int], None]:
    """A one-line text progress bar, redrawn in place (on standard error by default)."""

    def show(done: int, total: int) -> None:
        out = stream or sys.stderr
        share = done / total if total else 1.0
        filled = int(share * width)
        out.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {done:,}/{total:,} events ({share:.0%})"
        )
        if done >= total:
            out.write("\n")
        out.flush()

    return show
