"""Operator tools: create the topics, publish simulated events, request an erasure."""

from __future__ import annotations

import contextlib
import logging
import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from operators.erasure import encode_erase_request
from stream.connections import kafka_python_options
from stream.generator import MALFORMED, encode, generate_events
from stream.ports import Sink
from stream.settings import Settings

log = logging.getLogger(__name__)


def create_topics(settings: Settings, partitions: int, replication: int) -> None:
    admin = KafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap.split(","), **kafka_python_options(settings)
    )
    try:
        existing = set(admin.list_topics())
        wanted = [
            settings.input_topic,
            settings.output_topic,
            settings.dlq_topic,
            settings.late_topic,
            settings.alert_topic,
            settings.membership_topic,
        ]
        # Compacted: its latest record per user is the current assignment, kept for ever.
        configs = {settings.membership_topic: {"cleanup.policy": "compact"}}
        new = [
            NewTopic(t, partitions, replication, topic_configs=configs.get(t, {}))
            for t in wanted
            if t not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):  # created concurrently
                admin.create_topics(new)
        for topic in wanted:
            print(f"{topic}: {'created' if topic in {n.name for n in new} else 'exists'}")
    finally:
        admin.close()


def produce_simulated(
    settings: Settings, users: int, days: float, seed: int, malformed: int
) -> int:
    # Idempotent: retries keep each partition in order.
    from stream.wiring import kafka_sink  # here: the wiring loads every model library

    producer = kafka_sink(settings, bulk=True)
    sent = 0
    try:
        for event in generate_events(users, seed=seed, days=days):
            producer.send(settings.input_topic, *encode(event))
            sent += 1
        for i in range(malformed):
            producer.send(settings.input_topic, b"u", MALFORMED[i % len(MALFORMED)])
            sent += 1
        producer.flush()
    finally:
        producer.close()
    return sent


def request_erasure(
    settings: Settings, user_id: str, requested_by: str, via: str, sink: Sink | None = None
) -> str:
    """Publish an erasure request for ``user_id`` on every partition of the input topic; return
    its id once the broker acknowledged them all.

    Every partition, not the one the key hashes to: producers place keys with their own
    partitioner (Java's murmur2, librdkafka's CRC32, ...), so only the partitions' owners know
    where the user's state lives. Each applies the request in order with its partition's
    events; where it holds no state, the request is only audited. ``sink``: a producer to
    reuse (the API's); else one is made for the request."""
    erase_id, key, value = encode_erase_request(user_id, requested_by, via, int(time.time() * 1000))
    from stream.wiring import kafka_sink

    producer = sink or kafka_sink(settings)
    try:
        for partition in range(producer.partitions(settings.input_topic)):
            producer.send(settings.input_topic, key, value, partition)
        producer.flush()
    finally:
        if sink is None:
            producer.close()
    return erase_id
