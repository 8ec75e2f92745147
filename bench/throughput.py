"""Throughput of `segstream serve` on the real Kafka and Redis, next to a bare consume loop.

Produces N events for U users to a fresh topic once, then, in each of R rounds, times
(a) a bare kafka-python consume-only loop over the topic and (b) `segstream serve` processing
it, each from its first to its last event. Reports events/s of both, their ratio, and medians.
The machine is shared and noisy, so only the side-by-side ratio is meaningful across machines.

    make services-up && .venv/bin/python bench/throughput.py [--events 200000 --users 20000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stream.generator import encode, generate_events  # noqa: E402

BOOTSTRAP = os.environ.get("SEGSTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
REDIS_URL = os.environ.get("SEGSTREAM_REDIS_URL", "redis://127.0.0.1:6379/0")
PARTITIONS = 4


def produce(topic: str, events: int, users: int) -> int:
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    admin.close()
    producer = KafkaProducer(
        bootstrap_servers=BOOTSTRAP,
        linger_ms=50,
        batch_size=512 * 1024,
        compression_type=None,
        acks="all",
        enable_idempotence=True,
    )  # retries keep partition order
    sent = 0
    for event in itertools.islice(generate_events(users, seed=1, sessions_scale=0.25), events):
        key, value = encode(event)
        producer.send(topic, key=key, value=value)
        sent += 1
    producer.flush()
    producer.close()
    return sent


def consume_only(topic: str, total: int) -> float:
    """Events/s of a bare consumer: poll and count, nothing else."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=BOOTSTRAP,
        group_id=f"bare-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
    )
    seen, first_at = 0, 0.0
    while seen < total:
        batch = consumer.poll(timeout_ms=500, max_records=2000)
        n = sum(len(m) for m in batch.values())
        if n and not first_at:
            first_at, first_n = time.perf_counter(), n
        seen += n
    elapsed = time.perf_counter() - first_at
    consumer.close()
    return (total - first_n) / elapsed


def serve(topic: str, total: int, client: redis.Redis, log_dir: Path, run: int) -> float:
    """Events/s of `segstream serve`, from its first saved batch to its last."""
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "SEGSTREAM_INPUT_TOPIC": topic,
        "SEGSTREAM_GROUP": f"bench-{prefix}",
        "SEGSTREAM_KEY_PREFIX": prefix,
        "SEGSTREAM_HTTP_PORT": "0",
        "SEGSTREAM_OUTPUT_TOPIC": f"{topic}.changes",
        "SEGSTREAM_DLQ_TOPIC": f"{topic}.dlq",
        "SEGSTREAM_LATE_TOPIC": f"{topic}.late",
        "SEGSTREAM_ALERT_TOPIC": f"{topic}.alerts",
        "SEGSTREAM_KAFKA_BOOTSTRAP": BOOTSTRAP,
        "SEGSTREAM_REDIS_URL": REDIS_URL,
    }
    keys = [f"{prefix}:{{{topic}-{p}}}:offset" for p in range(PARTITIONS)]
    with (log_dir / f"serve-{run}.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "stream", "serve"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            cwd=ROOT,
        )
        done, first_at, first_n = 0, 0.0, 0
        while done < total:
            done = sum(int(v) for v in client.mget(keys) if v is not None)
            if done and not first_at:
                first_at, first_n = time.perf_counter(), done
            if process.poll() is not None:
                raise SystemExit(f"serve exited early; see {log.name}")
            time.sleep(0.01)
        elapsed = time.perf_counter() - first_at
        process.terminate()
        process.wait(timeout=60)
    for key in client.scan_iter(f"{prefix}:*", count=5000):
        client.delete(key)
    return (total - first_n) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    client = redis.Redis.from_url(REDIS_URL)
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    total = produce(topic, args.events, args.users)
    print(
        f"produced {total:,} events for {args.users:,} users to {topic} "
        f"in {time.perf_counter() - started:.1f} s",
        flush=True,
    )
    log_dir = Path(tempfile.mkdtemp(prefix="segstream-bench-"))
    rows = []
    for run in range(1, args.runs + 1):
        # Alternate the order so drift in the machine's load does not favour one side.
        if run % 2:
            bare = consume_only(topic, total)
            full = serve(topic, total, client, log_dir, run)
        else:
            full = serve(topic, total, client, log_dir, run)
            bare = consume_only(topic, total)
        rows.append({"run": run, "consume_only_eps": bare, "serve_eps": full, "ratio": full / bare})
        print(
            f"run {run}: consume-only {bare:>9,.0f} ev/s   serve {full:>9,.0f} ev/s   "
            f"serve/consume {full / bare:.2f}",
            flush=True,
        )
    summary = {
        key: statistics.median(r[key] for r in rows)
        for key in ("consume_only_eps", "serve_eps", "ratio")
    }
    print(
        f"median: consume-only {summary['consume_only_eps']:,.0f} ev/s, "
        f"serve {summary['serve_eps']:,.0f} ev/s, ratio {summary['ratio']:.2f} "
        f"({args.runs} runs, {total:,} events, {args.users:,} users, {PARTITIONS} partitions)"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    report = {"runs": rows, "median": summary, "events": total, "users": args.users}
    (out / "throughput.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
