"""``segstream create-topics``: the input, output, dead-letter, late, alert and membership
topics, the membership topic compacted (its latest record per user is the current assignment)."""

from __future__ import annotations

import contextlib

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from stream.connections import kafka_python_options
from stream.settings import Settings


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
