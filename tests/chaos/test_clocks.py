"""Chaos: one event dated 2099 and a producer whose clock runs an hour ahead (its events and
its Kafka record timestamps both an hour early), mixed into every partition of a live stream.
(59 minutes: since Kafka 3.6 a broker refuses record timestamps more than an hour ahead of its
own clock, ``log.message.timestamp.after.max.ms``.)
They are dead-lettered as ``future_timestamp``; every other user's events keep being applied,
none is set aside as late, and the watermarks stay where the honest events put them."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest

from stream.feeds.simulator import encode, generate_events
from tests.support.events import expected_states, features_only
from tests.support.servers import (
    end_offsets,
    ordered_producer,
    read_topic,
    redis_client,
)
from tests.support.service import Service

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
HOUR_MS = 3_600_000
SKEW_MS = 59 * 60_000


def test_a_runaway_clock_freezes_nothing(tmp_path: Path) -> None:
    client = redis_client()
    service = Service(tmp_path, SEGSTREAM_MAX_BATCH_RECORDS="200")
    now_ms = int(time.time() * 1000)
    honest = list(
        itertools.islice(
            generate_events(150, seed=8, days=2, start_ms=now_ms - 2 * 86_400_000), 5000
        )
    )
    assert max(int(e["ts"]) for e in honest) <= now_ms
    skewed = [
        {
            "event_id": f"skew-{i}",
            "user_id": f"skewed-{i % 40}",
            "type": "view",
            "ts": now_ms + SKEW_MS + i,
        }
        for i in range(400)
    ]
    producer = ordered_producer()
    sent_bad = []
    try:
        for index, event in enumerate(honest):
            key, value = encode(event)
            producer.send(service.input_topic, key=key, value=value)
            if index == 1000:  # one event from 2099, with an honest record timestamp
                bad_key, bad_value = encode(
                    {**event, "event_id": "from-2099", "ts": 4_070_908_800_000}
                )
                sent_bad.append(producer.send(service.input_topic, key=bad_key, value=bad_value))
            if index % 12 == 0 and skewed:  # the fast-clock producer, all along the stream
                event = skewed.pop()
                bad_key, bad_value = encode(event)
                sent_bad.append(
                    producer.send(
                        service.input_topic,
                        key=bad_key,
                        value=bad_value,
                        timestamp_ms=int(event["ts"]),
                    )
                )
        producer.flush()
        bad = {(m.partition, m.offset) for m in (f.get(timeout=30) for f in sent_bad)}
        assert len({p for p, _ in bad}) == 4  # every partition got some

        service.start()
        service.wait_for_offsets(client, end_offsets(service.input_topic))
        assert service.terminate() == 0

        got = {u: features_only(s) for u, s in service.states(client).items()}
        assert got == {u: features_only(s) for u, s in expected_states(honest).items()}
        dead = {
            (d["partition"], d["offset"]): d["reason"]
            for d in (json.loads(v) for _, v in read_topic(service.dlq_topic))
        }
        assert dead == dict.fromkeys(bad, "future_timestamp")
        assert read_topic(service.late_topic) == []
        newest = max(int(e["ts"]) for e in honest)
        for partition in range(4):
            watermark = int(
                client.get(f"{service.prefix}:{{{service.input_topic}-{partition}}}:watermark") or 0
            )
            assert watermark <= newest - HOUR_MS  # the honest events' time minus the grace
        print(
            f"\nclocks: {len(honest):,} honest events all applied, 0 late; "
            f"{len(bad)} future-dated (1 from 2099, {len(bad) - 1} from a clock an hour "
            f"ahead) dead-lettered as future_timestamp"
        )
    finally:
        producer.close()
        service.cleanup(client)
