"""Chaos: malformed messages of every class, through the real Kafka, to two running consumers
restarted by a supervisor if they exit. None may exit; every one is dead-lettered with a reason
(matched by partition and offset) and every valid event around them is applied once.

``make test`` runs a reduced fuzz; ``make chaos`` runs ``SEGSTREAM_CHAOS_MESSAGES`` (100,000).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from kafka import KafkaProducer

from stream.feeds.simulator import encode, generate_events
from tests.support.events import expected_states, features_only
from tests.support.poison import poison
from tests.support.servers import KAFKA_BOOTSTRAP, end_offsets, read_topic, redis_client
from tests.support.service import Service
from tests.support.supervisor import Supervisor

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
MESSAGES = int(os.environ.get("SEGSTREAM_CHAOS_MESSAGES", "3000"))


def test_no_malformed_message_stops_a_consumer(tmp_path: Path) -> None:
    client: redis.Redis = redis_client()
    service = Service(tmp_path, SEGSTREAM_MAX_BATCH_RECORDS="500")
    supervisor = Supervisor(service, 2)
    try:
        valid = list(itertools.islice(generate_events(300, seed=21, days=30), MESSAGES // 2))
        producer = KafkaProducer(
            bootstrap_servers=KAFKA_BOOTSTRAP,
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            max_request_size=1_100_000,
        )
        sent: dict[tuple[int, int], str] = {}  # (partition, offset) -> class
        futures = []
        bad = poison(MESSAGES, seed=5)
        for event in valid:
            key, value = encode(event)
            producer.send(service.input_topic, key=key, value=value)
            name, (bad_key, bad_value) = next(bad)
            # Keyed like a user so the classes spread over the partitions.
            futures.append(
                (
                    name,
                    producer.send(
                        service.input_topic,
                        key=bad_key or None,
                        value=bad_value,
                        partition=len(futures) % 4,
                    ),
                )
            )
        for name, (bad_key, bad_value) in bad:
            futures.append(
                (
                    name,
                    producer.send(
                        service.input_topic,
                        key=bad_key,
                        value=bad_value,
                        partition=len(futures) % 4,
                    ),
                )
            )
        producer.flush()
        for name, future in futures:
            metadata = future.get(timeout=30)
            sent[metadata.partition, metadata.offset] = name
        producer.close()

        ends = end_offsets(service.input_topic)
        wanted = {p: e for p, e in ends.items() if e}
        deadline = time.monotonic() + 600
        while service.offsets(client) != wanted:
            supervisor.watch()
            assert time.monotonic() < deadline, f"stuck at {service.offsets(client)}"
            time.sleep(0.2)
        supervisor.watch()
        assert supervisor.tally.exits == [] and supervisor.tally.restarts == 0

        dead = {
            (d["partition"], d["offset"]): d
            for d in (json.loads(v) for _, v in read_topic(service.dlq_topic))
        }
        missing = {position: name for position, name in sent.items() if position not in dead}
        assert Counter(missing.values()) == Counter()
        assert all(dead[p]["reason"] and dead[p]["detail"] for p in sent)
        assert all(len(json.dumps(d)) <= 1_000_000 for d in dead.values())
        by_class = Counter(sent.values())
        print(
            f"\nfuzz through Kafka: {len(sent):,} malformed messages, {len(by_class)} classes, "
            f"0 exits, 100% dead-lettered; reasons "
            f"{dict(Counter(dead[p]['reason'] for p in sent))}; by class {dict(by_class)}"
        )
        got = {u: features_only(s) for u, s in service.states(client).items()}
        assert got == {u: features_only(s) for u, s in expected_states(valid).items()}
    finally:
        supervisor.kill_all()
        service.cleanup(client)
