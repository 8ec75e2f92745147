"""Throughput of `segstream serve` on the real Kafka and Redis, next to bare consume loops.

Produces N events for U users to a fresh topic once, then, in each of R rounds (the order
rotating, so drift in the machine's load favours no step), times over the same topic:

- a bare kafka-python consume-only loop (the design card's client) and a bare confluent-kafka
  one: poll and count, nothing else;
- `segstream serve` on each client (``SEGSTREAM_KAFKA_CLIENT``), from its first saved batch to
  its last (read from the offsets it saves in Redis), with its own CPU time per event (user +
  system from /proc, every thread: other load on the machine does not count);
- with ``--baseline DIR`` (a checkout of another commit, e.g. ``git worktree add``), that
  commit's serve too, on the first client of ``--clients``, for a side-by-side speed-up;
- the live regime: serve (confluent-kafka) on a second topic holding the same stream's first
  half as stamped (a warm-up that publishes a model, not measured) and its second half
  re-stamped so that event time advances at 3,000 events/s (``bench/core.py``'s live regime),
  measured on the second half only.

Prints each round and the medians, and writes bench/results/throughput.json. The machine is
shared and noisy, so only side-by-side ratios are meaningful across machines.

    make services-up && .venv/bin/python bench/throughput.py [--events 200000 --users 20000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import redis
from common import (
    BOOTSTRAP,
    PARTITIONS,
    REDIS_URL,
    RESULTS,
    ROOT,
    bench_messages,
    cpu_seconds,
    create_topic,
    on_the_wall_clock,
    produce,
    running_serve,
)
from confluent_kafka import Consumer
from kafka import KafkaConsumer

CLIENTS = ("confluent-kafka", "kafka-python")
LIVE_RATE = 3000.0  # events/s of event time in the live regime


def bare_kafka_python(topic: str, total: int) -> float:
    """Events/s of a bare kafka-python consumer."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=f"bare-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
    )
    seen, first_at, first_n = 0, 0.0, 0
    while seen < total:
        batch = consumer.poll(timeout_ms=500, max_records=2000)
        n = sum(len(m) for m in batch.values())
        if n and not first_at:
            first_at, first_n = time.perf_counter(), n
        seen += n
    elapsed = time.perf_counter() - first_at
    consumer.close()
    return (total - first_n) / elapsed


def bare_confluent(topic: str, total: int) -> float:
    """Events/s of a bare confluent-kafka consumer, configured as serve's source is."""
    consumer = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": f"bare-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.queue.backoff.ms": 10,
        }
    )
    consumer.subscribe([topic])
    seen, first_at, first_n = 0, 0.0, 0
    while seen < total:
        n = sum(1 for m in consumer.consume(2000, 0.5) if m.error() is None)
        if n and not first_at:
            first_at, first_n = time.perf_counter(), n
        seen += n
    elapsed = time.perf_counter() - first_at
    consumer.close()
    return (total - first_n) / elapsed


def serve(
    topic: str,
    total: int,
    log_dir: Path,
    name: str,
    root: Path | None,
    client: str,
    measure_from: int = 0,
) -> tuple[float, float]:
    """Events/s of one serve process and its CPU µs per event over the same span: from its
    first saved batch past ``measure_from`` events (a warm-up before it) to its last."""
    store = redis.Redis.from_url(REDIS_URL)
    settings = {"SEGSTREAM_KAFKA_CLIENT": client}
    with running_serve(topic, log_dir, name, root or ROOT, settings) as (process,):
        done, first_at, first_n, first_cpu = 0, 0.0, 0, 0.0
        while done < total:
            done = process.saved(store)
            if done > measure_from and not first_at:
                first_at, first_n = time.perf_counter(), done
                first_cpu = cpu_seconds(process.process.pid)
            process.check()
            time.sleep(0.01)
        elapsed = time.perf_counter() - first_at
        cpu = cpu_seconds(process.process.pid) - first_cpu
    return (total - first_n) / elapsed, cpu / (total - first_n) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", default=",".join(CLIENTS), help="serve on these clients")
    parser.add_argument("--baseline", type=Path, help="checkout of a commit to compare with")
    args = parser.parse_args()
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    messages = bench_messages(args.events, args.users)
    create_topic(topic)
    produce(topic, messages)
    total = len(messages)
    live_topic = f"{topic}-live"
    warmup, live = on_the_wall_clock(messages, LIVE_RATE)
    create_topic(live_topic)
    produce(live_topic, warmup + live)
    print(f"{total:,} events for {args.users:,} users on {topic} ({PARTITIONS} partitions)")
    log_dir = Path(tempfile.mkdtemp(prefix="segstream-bench-"))
    steps = ["bare kafka-python", "bare confluent-kafka"]
    clients = args.clients.split(",")
    steps += [f"serve {c}" for c in clients]
    steps += ["baseline"] if args.baseline else []
    steps += ["serve live"]
    rows: list[dict[str, float]] = []
    for run in range(1, args.runs + 1):
        row: dict[str, float] = {}
        for step in steps[run % len(steps) :] + steps[: run % len(steps)]:
            if step == "bare kafka-python":
                row["bare_kafka_python_eps"] = bare_kafka_python(topic, total)
            elif step == "bare confluent-kafka":
                row["bare_confluent_eps"] = bare_confluent(topic, total)
            elif step == "serve live":
                found = serve(
                    live_topic, total, log_dir, f"live-{run}", None, CLIENTS[0], len(warmup)
                )
                row["serve_live_eps"], row["serve_live_cpu_us"] = found
            elif step == "baseline":
                found = serve(topic, total, log_dir, f"baseline-{run}", args.baseline, clients[0])
                row["baseline_eps"], row["baseline_cpu_us"] = found
            else:
                client = step.split()[1]
                key = client.replace("-", "_")
                found = serve(topic, total, log_dir, f"{key}-{run}", None, client)
                row[f"serve_{key}_eps"], row[f"serve_{key}_cpu_us"] = found
        for client in args.clients.split(","):
            key = client.replace("-", "_")
            row[f"serve_{key}_ratio"] = row[f"serve_{key}_eps"] / row["bare_kafka_python_eps"]
            row[f"serve_{key}_ratio_confluent"] = (
                row[f"serve_{key}_eps"] / row["bare_confluent_eps"]
            )
            if args.baseline and client == clients[0]:
                row[f"serve_{key}_speedup"] = row[f"serve_{key}_eps"] / row["baseline_eps"]
        rows.append(row)
        print(f"run {run}: " + ", ".join(f"{k} {v:,.3f}" for k, v in row.items()), flush=True)
    median = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    print(f"medians of {args.runs} runs:")
    print(f"  bare kafka-python loop    {median['bare_kafka_python_eps']:>10,.0f} ev/s")
    print(f"  bare confluent-kafka loop {median['bare_confluent_eps']:>10,.0f} ev/s")
    for client in args.clients.split(","):
        key = client.replace("-", "_")
        cpu = median[f"serve_{key}_cpu_us"]
        line = (
            f"  serve on {client:<16} {median[f'serve_{key}_eps']:>10,.0f} ev/s, "
            f"{cpu:.1f} CPU us/event ({1e6 / cpu:,.0f} ev/s per core), "
            f"{median[f'serve_{key}_ratio']:.3f} of the kafka-python loop, "
            f"{median[f'serve_{key}_ratio_confluent']:.3f} of the confluent-kafka loop"
        )
        if args.baseline and client == clients[0]:
            line += f", {median[f'serve_{key}_speedup']:.2f}x the baseline"
        print(line)
    print(
        f"  live regime (confluent-kafka) {median['serve_live_eps']:>10,.0f} ev/s, "
        f"{median['serve_live_cpu_us']:.1f} CPU us/event"
    )
    RESULTS.mkdir(exist_ok=True)
    report = {
        "events": total,
        "users": args.users,
        "partitions": PARTITIONS,
        "baseline": str(args.baseline) if args.baseline else None,
        "median": median,
        "runs": rows,
    }
    (RESULTS / "throughput.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
