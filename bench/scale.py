"""Scale in users: CPU per event and Redis memory per user with 10k to 1M users in the store.

For each population N, under a fresh key prefix on the real Redis: a warm-up pass of the bench
stream (``--active`` users) publishes a model and leaves real records, due entries and open
labels; then N - active dormant users are added, each a copy of a real user's record (in a
segment of the model), due entry (far in the future) and, for the sampled share, open labels,
written as ``segstream serve`` writes them (records with the user TTL). The continuation of the
same stream then runs in this process (Kafka replaced by the in-memory twin, so its noise does
not count; the state store is the real Redis), and its CPU time per event is measured.

Memory per user is everything under the prefix (records, due index, labels, per-partition
keys), from ``INFO memory``'s ``used_memory`` before and after, divided by the users; a
sample of ``MEMORY USAGE`` per record key is reported beside it. Writes
bench/results/scale.json.

    make services-up && .venv/bin/python bench/scale.py [--populations 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
import uuid
from typing import Any

import redis
from common import REDIS_URL, RESULTS, bench_messages
from prometheus_client import CollectorRegistry

from stream.redis.model_store import RedisModelStore
from stream.redis.state_store import RedisStateStore
from stream.settings import Settings
from stream.twins.broker import InMemoryBroker, InMemoryEventSource, InMemorySink
from stream.wiring import Parts, build_processor

FAR_MS = 4_102_444_800_000  # 2100-01-01: dormant users are indexed, never due here


class Pass:
    """One processor on the real Redis, fed through the in-memory twin of Kafka."""

    def __init__(self, settings: Settings, client: redis.Redis) -> None:
        self.settings = settings
        self.broker = InMemoryBroker()
        parts = Parts(
            InMemoryEventSource(self.broker, settings.input_topic),
            InMemorySink(self.broker),
            RedisStateStore(client, settings.key_prefix, settings.user_ttl_s),
            RedisModelStore(client, settings.key_prefix),
        )
        self.processor = build_processor(settings, parts, registry=CollectorRegistry())

    def run(self, messages: list[tuple[bytes, bytes]]) -> float:
        """Process ``messages`` after those before; CPU µs per event."""
        for key, value in messages:
            self.broker.append(self.settings.input_topic, key, value)
        started = time.process_time()
        while self.processor.run_once():
            pass
        return (time.process_time() - started) / len(messages) * 1e6


def add_dormant(client: redis.Redis, prefix: str, count: int, ttl_s: int) -> None:
    """``count`` copies of real users: record, due entry and (if any) open labels."""
    templates: list[tuple[str, bytes, bytes | None]] = []  # (partition tag, record, labels)
    for key in client.scan_iter(f"{prefix}:*:u:*", count=5000):
        tag = key.decode().split(":")[1]
        labels: bytes | None = client.hget(  # type: ignore[assignment]
            f"{prefix}:{tag}:labels", key.decode().rsplit(":u:", 1)[1]
        )
        record: bytes = client.get(key)  # type: ignore[assignment]
        templates.append((tag, record, labels))
        if len(templates) >= 2000:
            break
    rng = random.Random(7)
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        tag, record, labels = templates[rng.randrange(len(templates))]
        user = f"u{n:010d}"  # as long as the generator's ids
        pipe.set(f"{prefix}:{tag}:u:{user}", record, ex=ttl_s)
        pipe.zadd(f"{prefix}:{tag}:due", {user: FAR_MS})
        if labels is not None:
            pipe.hset(f"{prefix}:{tag}:labels", user, labels)
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()


def measure(population: int, active: int, events: int, client: redis.Redis) -> dict[str, Any]:
    prefix = f"scale-{uuid.uuid4().hex[:6]}"
    settings = Settings(key_prefix=prefix, input_topic="user-events")
    messages = bench_messages(2 * events, active)
    before = client.info("memory")["used_memory"]
    try:
        stream = Pass(settings, client)
        stream.run(messages[:events])
        if population > active:
            add_dormant(client, prefix, population - active, settings.user_ttl_s)
        cpu = stream.run(messages[events:])
        used = client.info("memory")["used_memory"] - before
        users = sum(1 for _ in client.scan_iter(f"{prefix}:*:u:*", count=10_000))
        sample = [k for _, k in zip(range(200), client.scan_iter(f"{prefix}:*:u:*"), strict=False)]
        record = statistics.median(client.memory_usage(k, samples=0) or 0 for k in sample)
    finally:
        for key in client.scan_iter(f"{prefix}:*", count=10_000):
            client.delete(key)
    return {
        "users": users,
        "cpu_us_per_event": cpu,
        "redis_bytes_per_user": used / users,
        "record_memory_usage_bytes": record,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--populations", default="10000,100000,1000000")
    parser.add_argument("--active", type=int, default=10_000, help="users sending events")
    parser.add_argument("--events", type=int, default=100_000, help="events per pass")
    args = parser.parse_args()
    client = redis.Redis.from_url(REDIS_URL)
    rows = []
    for population in (int(p) for p in args.populations.split(",")):
        row = measure(population, args.active, args.events, client)
        rows.append(row)
        print(
            f"{row['users']:>9,} users: {row['cpu_us_per_event']:.1f} CPU us/event, "
            f"{row['redis_bytes_per_user']:.0f} bytes per user in Redis (everything), "
            f"record key {row['record_memory_usage_bytes']:.0f} bytes (MEMORY USAGE)",
            flush=True,
        )
    growth = rows[-1]["cpu_us_per_event"] / rows[0]["cpu_us_per_event"]
    print(f"CPU per event from {rows[0]['users']:,} to {rows[-1]['users']:,} users: {growth:.2f}x")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scale.json").write_text(json.dumps({"rows": rows, "growth": growth}, indent=2))


if __name__ == "__main__":
    main()
