"""``segstream produce``: simulated shoppers' events on the input topic, continuing where the
topic's latest event leaves off (or from a date, or up to now)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from kafka import KafkaConsumer, TopicPartition

from operators.decoding import decode_event
from operators.erasure import EraseRequest
from operators.events import Event
from stream.connections import kafka_python_options
from stream.errors import DependencyError
from stream.feeds.simulator import DAY_MS, DEFAULT_START_MS, MALFORMED, encode, generate_events
from stream.ports import Sink
from stream.settings import Settings


def produce_simulated(
    producer: Sink,
    topic: str,
    users: int,
    days: float,
    seed: int,
    malformed: int,
    start_ms: int,
    until_ms: int,
) -> int:
    """Publish simulated shoppers' events from ``start_ms`` over ``days``, none after
    ``until_ms`` (now: a session that began just before it would run into the future), with
    ``producer`` (an idempotent one: retries keep each partition in order)."""
    sent = 0
    for event in generate_events(users, seed=seed, days=days, start_ms=start_ms):
        if event["ts"] > until_ms:
            break  # in event-time order: every later one is after it too
        producer.send(topic, *encode(event))
        sent += 1
    for i in range(malformed):
        producer.send(topic, b"u", MALFORMED[i % len(MALFORMED)])
        sent += 1
    producer.flush()
    return sent


def latest_event_ms(settings: Settings, tail: int = 500) -> int | None:
    """The latest event time among the last ``tail`` messages of each partition of the input
    topic (malformed messages and erasure requests aside), or None if it holds no event."""
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap.split(","),
        enable_auto_commit=False,
        **kafka_python_options(settings),
    )
    latest: int | None = None
    try:
        topic = settings.input_topic
        partitions = [TopicPartition(topic, i) for i in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return None
        consumer.assign(partitions)
        ends = consumer.end_offsets(partitions)
        starts = consumer.beginning_offsets(partitions)
        for tp in partitions:
            consumer.seek(tp, max(starts[tp], ends[tp] - tail))
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise DependencyError(f"kafka: reading the end of {topic} took over 60 s")
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    event = decode_event(record.key, record.value)
                    if isinstance(event, Event) and not isinstance(event, EraseRequest):
                        latest = event.ts_ms if latest is None else max(latest, event.ts_ms)
    finally:
        consumer.close()
    return latest


def simulation_window(
    settings: Settings, start: str, days: float, now_ms: int
) -> tuple[int, float]:
    """When ``segstream produce``'s events start (epoch ms) and how many days they span.

    ``latest`` continues an hour after the latest event on the topic (the generator's start
    date if it has none), so a second run tops the stream up instead of sending events that are
    all late; on a live topic, whose latest event is recent, the window ends now instead of in
    the future (where events are refused). ``now``: the ``days`` before now. Else an ISO 8601
    date (UTC if it names no offset)."""
    if start == "now":
        return now_ms - int(days * DAY_MS), days
    if start != "latest":
        moment = datetime.fromisoformat(start)
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000), days
    latest = latest_event_ms(settings)
    if latest is None:
        return DEFAULT_START_MS, days
    begin = latest + 3_600_000
    if begin + days * DAY_MS <= now_ms:
        return begin, days
    begin = max(latest + 1, now_ms - int(days * DAY_MS))
    if begin >= now_ms:
        raise ValueError("the topic's latest event is not in the past: use --start DATE")
    return begin, (now_ms - begin) / DAY_MS
