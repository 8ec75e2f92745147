"""Throughput of `segstream serve` on the real Kafka and Redis, next to a bare consume loop.

Produces N events for U users to a fresh topic once, then, in each of R rounds, times
(a) a bare kafka-python consume-only loop over the topic and (b) `segstream serve` processing
it, each from its first to its last event. Reports events/s of both, their ratio, serve's own
CPU time per event (user + system, from /proc: other load on the machine does not count), and
medians. With ``--baseline DIR`` (a checkout of another commit, e.g. ``git worktree add``),
that commit's serve runs in each round too, for a side-by-side speed-up. The machine is shared
and noisy, so only side-by-side ratios are meaningful across machines.

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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def serve(
    topic: str, total: int, client: redis.Redis, log_dir: Path, run: int, root: Path = ROOT
) -> tuple[float, float]:
    """Events/s of `segstream serve` (from ``root``), from its first saved batch to its last,
    and its CPU µs per event over the same span."""
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
            cwd=root,
        )
        done, first_at, first_n, first_cpu = 0, 0.0, 0, 0.0
        while done < total:
            done = sum(int(v) for v in client.mget(keys) if v is not None)
            if done and not first_at:
                first_at, first_n, first_cpu = time.perf_counter(), done, cpu_seconds(process.pid)
            if process.poll() is not None:
                raise SystemExit(f"serve exited early; see {log.name}")
            time.sleep(0.01)
        elapsed = time.perf_counter() - first_at
        cpu = cpu_seconds(process.pid) - first_cpu
        process.terminate()
        process.wait(timeout=60)
    for key in client.scan_iter(f"{prefix}:*", count=5000):
        client.delete(key)
    return (total - first_n) / elapsed, cpu / (total - first_n) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="checkout of a commit to compare with")
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
        row: dict[str, float] = {"run": run}

        steps = ["bare", "serve"] + (["baseline"] if args.baseline else [])
        # Rotate the order so drift in the machine's load does not favour one side.
        for step in steps[run % len(steps) :] + steps[: run % len(steps)]:
            if step == "bare":
                row["consume_only_eps"] = consume_only(topic, total)
            elif step == "serve":
                row["serve_eps"], row["serve_cpu_us"] = serve(topic, total, client, log_dir, run)
            else:
                root = args.baseline.resolve()
                found = serve(topic, total, client, log_dir, 100 + run, root)
                row["baseline_eps"], row["baseline_cpu_us"] = found
        row["ratio"] = row["serve_eps"] / row["consume_only_eps"]
        line = (
            f"run {run}: consume-only {row['consume_only_eps']:>9,.0f} ev/s   serve "
            f"{row['serve_eps']:>9,.0f} ev/s ({row['serve_cpu_us']:.1f} CPU us/event)   "
            f"serve/consume {row['ratio']:.3f}"
        )
        if args.baseline:
            row["speedup"] = row["serve_eps"] / row["baseline_eps"]
            row["cpu_ratio"] = row["baseline_cpu_us"] / row["serve_cpu_us"]
            line += (
                f"   baseline {row['baseline_eps']:,.0f} ev/s "
                f"({row['baseline_cpu_us']:.1f} CPU us/event)   speed-up {row['speedup']:.2f}x"
            )
        rows.append(row)
        print(line, flush=True)
    summary = {key: statistics.median(r[key] for r in rows) for key in rows[0] if key != "run"}
    print(
        f"median: consume-only {summary['consume_only_eps']:,.0f} ev/s, "
        f"serve {summary['serve_eps']:,.0f} ev/s ({summary['serve_cpu_us']:.1f} CPU us/event, "
        f"{1e6 / summary['serve_cpu_us']:,.0f} ev/s per core), ratio {summary['ratio']:.3f}"
        + (f", speed-up vs baseline {summary['speedup']:.2f}x" if args.baseline else "")
        + f" ({args.runs} runs, {total:,} events, {args.users:,} users, {PARTITIONS} partitions)"
    )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    report = {
        "runs": rows,
        "median": summary,
        "events": total,
        "users": args.users,
        "baseline": str(args.baseline) if args.baseline else None,
    }
    (out / "throughput.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
