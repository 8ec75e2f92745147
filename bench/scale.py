"""Scale in users: CPU per event and Redis memory per user with 10k to 1M users in the store.

For each population N, under a fresh key prefix on the real Redis: a warm-up pass of the bench
stream (``--active`` users) publishes a model and leaves real records, due entries and open
labels; then N - active dormant users are added, each a copy of a real user's record (in a
segment of the model), due entry (far in the future) and, for the sampled share, open labels,
written into the buckets as ``segstream serve`` writes them. The continuation of the
same stream then runs in this process (Kafka replaced by the in-memory twin, so its noise does
not count; the state store is the real Redis), and its CPU time per event is measured.

Memory per user is everything under the prefix (records, due index, labels, per-partition
keys), from ``INFO memory``'s ``used_memory`` before and after (on a cluster, its masters'),
divided by the users. Writes bench/results/scale.json (``--out``).

    make services-up && .venv/bin/python bench/scale.py [--populations 10000,100000,1000000]
    .venv/bin/python bench/scale.py --url redis+cluster://127.0.0.1:7000 --out scale-cluster.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
import uuid
from typing import Any

from common import REDIS_URL, RESULTS, bench_messages
from prometheus_client import CollectorRegistry
from redis.cluster import RedisCluster

from operators.record import NEXT_DUE_AT
from stream.connections import redis_client
from stream.ports import Partition
from stream.redis.client import Client
from stream.redis.compact import compact_many
from stream.redis.model_store import RedisModelStore
from stream.redis.state_store import LABEL_SHARE, RedisStateStore, bucket_of
from stream.settings import Settings
from stream.twins.broker import InMemoryBroker, InMemoryEventSource, InMemorySink
from stream.wiring import Parts, build_processor

FAR_MS = 4_102_444_800_000  # 2100-01-01: dormant users are indexed, never due here


class Pass:
    """One processor on the real Redis, fed through the in-memory twin of Kafka."""

    def __init__(self, settings: Settings, client: Client) -> None:
        self.settings = settings
        self.broker = InMemoryBroker()
        parts = Parts(
            InMemoryEventSource(self.broker, settings.input_topic),
            InMemorySink(self.broker),
            RedisStateStore(client, settings.key_prefix, settings.redis_buckets),
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


def add_dormant(store: RedisStateStore, client: Client, topic: str, count: int) -> None:
    """``count`` copies of real users: record (due far in the future), its bucket's bound in
    the due index and, for the sampled share, open labels."""
    partitions = store.saved_partitions(topic)
    templates: list[tuple[Partition, bytes, bytes | None]] = []  # (partition, record, labels)
    for partition in partitions:
        _, users = store.scan_users(partition, 0, 600)
        pending = store.load_pending({partition: list(users)})[partition]
        templates += [(partition, record, pending.get(u)) for u, record in users.items()]
    rng = random.Random(7)
    far = FAR_MS.to_bytes(8, "little")
    pipe = client.pipeline(transaction=False)
    for n in range(count):
        partition, record, labels = templates[rng.randrange(len(templates))]
        user = f"u{n:010d}"  # as long as the generator's ids
        bucket = bucket_of(user, store.buckets(partition))
        (dormant,) = compact_many([record[:NEXT_DUE_AT] + far + record[NEXT_DUE_AT + 8 :]])
        pipe.hset(store.key(partition, f"b:{bucket}"), user, dormant)
        pipe.zadd(store.key(partition, "due"), {str(bucket): FAR_MS}, lt=True)
        if labels is not None:
            pipe.hset(store.key(partition, f"l:{bucket // LABEL_SHARE}"), user, labels)
        if n % 5000 == 4999:
            pipe.execute()
    pipe.execute()


def used_memory(client: Client) -> int:
    """``INFO memory``'s used_memory: on a cluster, the masters' together (replicas copy it)."""
    if isinstance(client, RedisCluster):
        nodes = client.get_primaries()  # type: ignore[no-untyped-call]
        info: dict[str, Any] = client.info("memory", target_nodes=nodes)
        return sum(int(node["used_memory"]) for node in info.values())
    return int(client.info("memory")["used_memory"])


def count_users(store: RedisStateStore, client: Client, topic: str) -> int:
    """The users in every bucket of the topic's partitions (HLEN, pipelined)."""
    total = 0
    for partition in store.saved_partitions(topic):
        pipe = client.pipeline(transaction=False)
        for bucket in range(store.buckets(partition)):
            pipe.hlen(store.key(partition, f"b:{bucket}"))
        total += sum(pipe.execute())
    return total


def measure(
    population: int, active: int, events: int, client: Client, buckets: int, frozen: bool
) -> dict[str, Any]:
    prefix = f"scale-{uuid.uuid4().hex[:6]}"
    settings = Settings(key_prefix=prefix, input_topic="user-events", redis_buckets=buckets)
    store = RedisStateStore(client, prefix, settings.redis_buckets)
    messages = bench_messages(2 * events, active)
    before = used_memory(client)
    try:
        stream = Pass(settings, client)
        stream.run(messages[:events])
        # Finish the warm-up's own re-placements (a model that retired segments rescans every
        # stored user): the dormant copies are of users already in the model's segments.
        while stream.processor.partitions.reassignments.cursors:
            stream.processor.reassign_some()
        if frozen:  # the published model stays: no retired segment rescans the population
            stream.processor.publisher.training = False
        if population > active:
            add_dormant(store, client, settings.input_topic, population - active)
        cpu = stream.run(messages[events:])
        used = used_memory(client) - before
        users = count_users(store, client, settings.input_topic)
    finally:
        for key in client.scan_iter(f"{prefix}:*", count=10_000):
            client.delete(key)
    return {"users": users, "cpu_us_per_event": cpu, "redis_bytes_per_user": used / users}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--populations", default="10000,100000,1000000")
    parser.add_argument("--active", type=int, default=10_000, help="users sending events")
    parser.add_argument("--events", type=int, default=100_000, help="events per pass")
    parser.add_argument("--url", default=REDIS_URL, help="redis+cluster://... for a cluster")
    parser.add_argument("--out", default="scale.json", help="file name in bench/results/")
    parser.add_argument(
        "--buckets", type=int, default=Settings().redis_buckets, help="per partition"
    )
    parser.add_argument(
        "--frozen",
        action="store_true",
        help="no training in the measured pass: event processing alone, without the rescans "
        "of every stored user that a model retiring a segment starts",
    )
    args = parser.parse_args()
    client = redis_client(Settings(), args.url)
    rows = []
    for population in (int(p) for p in args.populations.split(",")):
        row = measure(population, args.active, args.events, client, args.buckets, args.frozen)
        rows.append(row)
        print(
            f"{row['users']:>9,} users: {row['cpu_us_per_event']:.1f} CPU us/event, "
            f"{row['redis_bytes_per_user']:.0f} bytes per user in Redis (everything)",
            flush=True,
        )
    growth = rows[-1]["cpu_us_per_event"] / rows[0]["cpu_us_per_event"]
    print(f"CPU per event from {rows[0]['users']:,} to {rows[-1]['users']:,} users: {growth:.2f}x")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / args.out).write_text(json.dumps({"rows": rows, "growth": growth}, indent=2))


if __name__ == "__main__":
    main()
