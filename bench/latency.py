"""Latency of `segstream serve` under a paced producer: from an event's append to the input
topic to its change event's append to the output topic (acks=all: appended is acknowledged).

Both topics stamp records with the broker's clock (``message.timestamp.type=LogAppendTime``),
so producer-side batching and clocks do not count. A warm-up (unpaced, until the first model
is published and every warm-up event is saved) comes first; then a probe of ``--probe`` events
produced at once measures serve's maximum throughput at this point of the stream (with a
model, as many users as it has met, their re-scorings falling due); then events are produced
at ``--rate`` per second (default: half that maximum) for ``--seconds``. Every change event a
paced event triggered counts (re-scorings' changes have no input record and do not). Prints
p50, p99 and p99.9; writes bench/results/latency.json.

    make services-up && .venv/bin/python bench/latency.py [--rate 5000 --seconds 30]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import orjson
import redis
from common import (
    BOOTSTRAP,
    PARTITIONS,
    REDIS_URL,
    RESULTS,
    bench_messages,
    create_topic,
    produce,
    running_serve,
    wait_until,
)
from confluent_kafka import Consumer, Producer

APPEND_TIME: dict[str, str] = {"message.timestamp.type": "LogAppendTime"}


def paced(topic: str, messages: list[tuple[bytes, bytes]], rate: float) -> float:
    """Send at ``rate`` per second in 5 ms ticks; the rate achieved."""
    producer = Producer(
        {"bootstrap.servers": BOOTSTRAP, "enable.idempotence": True, "linger.ms": 1}
    )
    started = time.perf_counter()
    for sent, (key, value) in enumerate(messages):
        due = started + sent / rate
        if due > time.perf_counter() + 0.005:
            producer.poll(0)
            time.sleep(max(due - time.perf_counter(), 0))
        producer.produce(topic, value, key)
    elapsed = time.perf_counter() - started
    producer.flush(60)
    return len(messages) / elapsed


def read_all(topic: str, count: int | None = None, idle_s: float = 5.0) -> list[tuple[bytes, int]]:
    """(value, append time ms) of a topic's records, until ``count`` or ``idle_s`` of nothing."""
    consumer = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": f"latency-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    found: list[tuple[bytes, int]] = []
    quiet_since = time.monotonic()
    while (count is None or len(found) < count) and time.monotonic() - quiet_since < idle_s:
        messages = consumer.consume(5000, 0.5)
        if messages:
            quiet_since = time.monotonic()
        found += [(m.value() or b"", m.timestamp()[1]) for m in messages if m.error() is None]
    consumer.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warmup", type=int, default=100_000, help="events before pacing")
    parser.add_argument("--probe", type=int, default=30_000, help="events to find the maximum")
    parser.add_argument("--rate", type=float, default=0.0, help="events/s (default: see above)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--timeline", action="store_true", help="print each second's worst")
    args = parser.parse_args()
    # Enough events for a pace of up to 20,000/s: what is not sent is never read.
    messages = bench_messages(args.warmup + args.probe + int(20_000 * args.seconds), args.users)
    topic = f"latency-{uuid.uuid4().hex[:8]}"
    create_topic(topic, PARTITIONS, **APPEND_TIME)
    create_topic(f"{topic}.changes", PARTITIONS, **APPEND_TIME)
    produce(topic, messages[: args.warmup])
    store = redis.Redis.from_url(REDIS_URL)
    log_dir = Path(tempfile.mkdtemp(prefix="segstream-latency-"))
    with running_serve(topic, log_dir, "latency") as (serve,):
        model = f"{serve.prefix}:model:segments"

        def warm() -> bool:
            serve.check()
            return serve.saved(store) >= args.warmup and bool(store.exists(model))

        wait_until(warm, 600, "the warm-up to be processed and a model published")
        probe_end = args.warmup + args.probe
        started = time.perf_counter()
        produce(topic, messages[args.warmup : probe_end])
        wait_until(lambda: serve.saved(store) >= probe_end, 600, "serve to process the probe")
        maximum = args.probe / (time.perf_counter() - started)
        rate = args.rate or maximum / 2
        sent = messages[probe_end : probe_end + int(rate * args.seconds)]
        achieved = paced(topic, sent, rate)
        wait_until(lambda: serve.saved(store) >= probe_end + len(sent), 600, "serve to catch up")
    paced_ids = {orjson.loads(value)["event_id"] for _, value in sent}
    appended = {
        event_id: stamp
        for value, stamp in read_all(topic, probe_end + len(sent))
        if (event_id := orjson.loads(value)["event_id"]) in paced_ids
    }
    pairs = [
        (appended[change["event_id"]], stamp - appended[change["event_id"]])
        for value, stamp in read_all(f"{topic}.changes")
        if (change := orjson.loads(value)).get("event_id") in appended
    ]
    latencies = [latency for _, latency in pairs]
    if args.timeline:  # the worst latency of each second of the paced phase
        start = min(at for at, _ in pairs)
        worst: dict[int, int] = {}
        for at, latency in pairs:
            second = (at - start) // 1000
            worst[second] = max(worst.get(second, 0), latency)
        print(" ".join(f"{s}:{w}" for s, w in sorted(worst.items())))
    p50, p99, p999 = np.percentile(latencies, [50, 99, 99.9]).tolist()
    print(
        f"maximum {maximum:,.0f} ev/s; paced at {achieved:,.0f} ev/s for {args.seconds:.0f} s: "
        f"{len(latencies):,} change events; latency p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
        f"p99.9 {p999:.0f} ms "
        f"(append to the input topic -> change appended to the output topic)"
    )
    RESULTS.mkdir(exist_ok=True)
    report = {
        "maximum_eps": maximum,
        "rate_eps": achieved,
        "seconds": args.seconds,
        "changes": len(latencies),
        "p50_ms": p50,
        "p99_ms": p99,
        "p999_ms": p999,
        "max_ms": max(latencies),
    }
    (RESULTS / "latency.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
