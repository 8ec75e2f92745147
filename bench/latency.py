"""Latency of `segstream serve` under a paced producer: from an event's append to the input
topic to its change event's append to the output topic (acks=all: appended is acknowledged).

Both topics stamp records with the broker's clock (``message.timestamp.type=LogAppendTime``),
so producer-side batching and clocks do not count; the pacing producer connects before its
clock starts, so it sends no burst. A warm-up (unpaced, until the first model
is published and every warm-up event is saved) comes first; then a probe of ``--probe`` events
produced at once measures serve's maximum throughput at this point of the stream (with a
model, as many users as it has met, their re-scorings falling due); then events are produced
at ``--rate`` per second (default: half that maximum) for ``--seconds``, twice: as the bench
stream stamps them, and re-stamped so that event time advances with the wall clock (the
bench stream packs 51 days into 200,000 events, so every shopper falls due for its daily
re-scoring every few seconds; on the wall clock re-scorings come at a real stream's pace, and
the figure is the events' own). Every change event a paced event triggered counts
(re-scorings' changes have no input record and do not). Prints p50, p99 and p99.9 of each
phase; writes bench/results/latency.json.

    make services-up && .venv/bin/python bench/latency.py [--rate 5000 --seconds 15]
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
    # Connected and holding its producer id before the clock starts: otherwise the first
    # fraction of a second is queued and sent as one burst.
    producer.list_topics(topic, timeout=30)
    time.sleep(1.0)
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


def on_the_wall_clock(
    messages: list[tuple[bytes, bytes]], start_ms: int, rate: float
) -> list[tuple[bytes, bytes]]:
    """The messages re-stamped from ``start_ms`` on, event time advancing as they are paced."""
    stamped = []
    for n, (key, value) in enumerate(messages):
        event = orjson.loads(value)
        event["ts"] = start_ms + int(n * 1000 / rate)
        stamped.append((key, orjson.dumps(event)))
    return stamped


def latencies_of(
    sent: list[tuple[bytes, bytes]],
    appended: dict[str, int],
    changes: list[tuple[bytes, int]],
    timeline: bool,
) -> dict[str, float]:
    """Percentiles of the latencies of the change events ``sent`` triggered."""
    ids = {orjson.loads(value)["event_id"] for _, value in sent}
    pairs = [
        (appended[change["event_id"]], stamp - appended[change["event_id"]])
        for value, stamp in changes
        if (change := orjson.loads(value)).get("event_id") in ids
    ]
    latencies = [latency for _, latency in pairs]
    if timeline:  # the worst latency of each second of the paced phase
        start = min(at for at, _ in pairs)
        worst: dict[int, int] = {}
        for at, latency in pairs:
            second = (at - start) // 1000
            worst[second] = max(worst.get(second, 0), latency)
        print(" ".join(f"{s}:{w}" for s, w in sorted(worst.items())))
    p50, p99, p999 = np.percentile(latencies, [50, 99, 99.9]).tolist()
    return {
        "changes": len(latencies),
        "p50_ms": p50,
        "p99_ms": p99,
        "p999_ms": p999,
        "max_ms": max(latencies),
    }


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
    parser.add_argument("--seconds", type=float, default=15.0, help="per phase")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--timeline", action="store_true", help="print each second's worst")
    args = parser.parse_args()
    # Enough events for two phases at up to 20,000/s: what is not sent is never read.
    messages = bench_messages(args.warmup + args.probe + int(2 * 20_000 * args.seconds), args.users)
    topic = f"latency-{uuid.uuid4().hex[:8]}"
    create_topic(topic, PARTITIONS, **APPEND_TIME)
    create_topic(f"{topic}.changes", PARTITIONS, **APPEND_TIME)
    produce(topic, messages[: args.warmup])
    store = redis.Redis.from_url(REDIS_URL)
    log_dir = Path(tempfile.mkdtemp(prefix="segstream-latency-"))
    with running_serve(topic, log_dir, "latency") as (serve,):
        model = f"{serve.prefix}:{{models}}:segments"

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
        # Each phase as long as asked, or half of the stream that is left (20,000 shoppers'
        # events run out at high rates).
        count = min(int(rate * args.seconds), (len(messages) - probe_end) // 2)
        sent = messages[probe_end : probe_end + count]
        achieved = paced(topic, sent, rate)
        wait_until(lambda: serve.saved(store) >= probe_end + count, 600, "serve to catch up")
        # The wall-clock phase goes on from the latest event time so far: nothing is late.
        latest = max(orjson.loads(value)["ts"] for _, value in messages[: probe_end + count])
        wall = on_the_wall_clock(messages[probe_end + count : probe_end + 2 * count], latest, rate)
        achieved_wall = paced(topic, wall, rate)
        total = probe_end + len(sent) + len(wall)
        wait_until(lambda: serve.saved(store) >= total, 600, "serve to catch up")
    # Each input record's append time; each phase picks its own events' (latencies_of).
    appended = {orjson.loads(value)["event_id"]: stamp for value, stamp in read_all(topic, total)}
    changes = read_all(f"{topic}.changes")
    found = latencies_of(sent, appended, changes, args.timeline)
    found_wall = latencies_of(wall, appended, changes, args.timeline)
    print(f"maximum {maximum:,.0f} ev/s (append to the input topic -> change appended):")
    for what, pace, m in (
        ("the bench stream's clock", achieved, found),
        ("the wall clock", achieved_wall, found_wall),
    ):
        print(
            f"  {what}: paced at {pace:,.0f} ev/s for {count / pace:.0f} s, "
            f"{m['changes']:,} change events; latency p50 {m['p50_ms']:.0f} ms, "
            f"p99 {m['p99_ms']:.0f} ms, p99.9 {m['p999_ms']:.0f} ms"
        )
    RESULTS.mkdir(exist_ok=True)
    report = {
        "maximum_eps": maximum,
        "rate_eps": achieved,
        "seconds": count / achieved,
        **found,
        "wall_clock": {"rate_eps": achieved_wall, **found_wall},
    }
    (RESULTS / "latency.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
