"""Scale-out: aggregate CPU per event of two `segstream serve` processes against one.

In each of R rounds (the order alternating), for one process and for two in one group: a
fresh topic of four partitions, the serve copies started on it while it is empty, and once
the group has settled (every partition assigned, each to one copy, read from the copies'
logs) the bench stream produced to it. Measured from the first event produced to the last
one saved: the copies' summed CPU time per event (/proc, every thread). Afterwards the logs
must show no assignment or revocation during the measurement, so each partition was
processed by exactly one copy. Writes bench/results/two_processes.json.

    make services-up && .venv/bin/python bench/two_processes.py [--events 200000 --runs 3]
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from common import (
    PARTITIONS,
    REDIS_URL,
    RESULTS,
    Serve,
    bench_messages,
    cpu_seconds,
    create_topic,
    produce,
    running_serve,
    wait_until,
)

OWNERSHIP = re.compile(r"\b(assigned|revoked) (\[[^\]]*\])")


def owned(log: Path) -> set[str]:
    """The partitions a copy owns now, by replaying its log's assignments and revocations."""
    partitions: set[str] = set()
    for change, listed in OWNERSHIP.findall(log.read_text(errors="replace")):
        names = set(ast.literal_eval(listed))
        partitions = partitions | names if change == "assigned" else partitions - names
    return partitions


def settled(serves: list[Serve], topic: str) -> bool:
    """Every partition owned, by exactly one copy, and every copy owning some."""
    for serve in serves:
        serve.check()
    sets = [owned(serve.log) for serve in serves]
    every = {f"{topic}-{p}" for p in range(PARTITIONS)}
    return all(sets) and sum(map(len, sets)) == PARTITIONS and set().union(*sets) == every


def measure(
    messages: list[tuple[bytes, bytes]], copies: int, log_dir: Path, name: str
) -> dict[str, Any]:
    topic = f"scaleout-{uuid.uuid4().hex[:8]}"
    create_topic(topic)
    store = redis.Redis.from_url(REDIS_URL)
    with running_serve(topic, log_dir, name, copies=copies) as serves:
        wait_until(lambda: settled(serves, topic), 120, "the group to settle")
        time.sleep(1.0)  # a late rebalance would show in the check below
        assignment = [sorted(owned(serve.log)) for serve in serves]
        marks = [serve.log.stat().st_size for serve in serves]
        before = [cpu_seconds(serve.process.pid) for serve in serves]
        started = time.perf_counter()
        produce(topic, messages)
        wait_until(lambda: serves[0].saved(store) >= len(messages), 900, "serve to finish")
        elapsed = time.perf_counter() - started
        cpu = [cpu_seconds(s.process.pid) - b for s, b in zip(serves, before, strict=True)]
        for serve, mark in zip(serves, marks, strict=True):
            with serve.log.open("rb") as log:
                log.seek(mark)
                if OWNERSHIP.search(log.read().decode(errors="replace")):
                    raise SystemExit(f"{serve.log}: the group rebalanced during the measurement")
    return {
        "copies": copies,
        "cpu_us_per_event": sum(cpu) / len(messages) * 1e6,
        "cpu_share": [c / sum(cpu) for c in cpu],
        "events_per_s": len(messages) / elapsed,
        "assignment": assignment,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    messages = bench_messages(args.events, args.users)
    log_dir = Path(tempfile.mkdtemp(prefix="segstream-scaleout-"))
    rows = []
    for run in range(1, args.runs + 1):
        row = {}
        for copies in (1, 2) if run % 2 else (2, 1):
            found = measure(messages, copies, log_dir, f"run{run}-{copies}")
            row[copies] = found
            print(
                f"run {run}, {copies} process(es): {found['cpu_us_per_event']:.1f} CPU us/event "
                f"in all, {found['events_per_s']:,.0f} ev/s; partitions {found['assignment']}",
                flush=True,
            )
        rows.append(
            {
                "one_cpu_us": row[1]["cpu_us_per_event"],
                "two_cpu_us": row[2]["cpu_us_per_event"],
                "cpu_ratio": row[2]["cpu_us_per_event"] / row[1]["cpu_us_per_event"],
                "one_eps": row[1]["events_per_s"],
                "two_eps": row[2]["events_per_s"],
                "two_assignment": row[2]["assignment"],
            }
        )
    keys = ("one_cpu_us", "two_cpu_us", "cpu_ratio", "one_eps", "two_eps")
    median = {key: statistics.median(r[key] for r in rows) for key in keys}
    print(
        f"medians of {args.runs} runs: one process {median['one_cpu_us']:.1f} CPU us/event, two "
        f"processes {median['two_cpu_us']:.1f} in all: {median['cpu_ratio']:.2f}x; each "
        f"partition processed by exactly one copy"
    )
    RESULTS.mkdir(exist_ok=True)
    report = {"events": len(messages), "users": args.users, "median": median, "runs": rows}
    (RESULTS / "two_processes.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
