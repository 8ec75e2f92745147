"""`segstream evaluate` on a long history: wall time and peak memory per worker.

Generates (seeded, so every run reads the same file) an 18-month transactions history like
the public one the core issue names: ``--users`` customers (default 25,000), each buying a
few times (about 3 on average, geometric) at random moments of the 18 months, amounts
log-normal; writes it as JSON lines, then runs the whole `segstream evaluate` command on it
(5 seeds and the tags' run, in parallel worker processes, as a user runs it). Reports the wall
clock, the CPU, and the peak resident memory of the largest worker (ru_maxrss of the
children); writes bench/results/evaluate.json. Targets: ≤ 5 minutes, ≤ 1 GB per worker.

    .venv/bin/python bench/evaluate.py [--users 25000 --months 18]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RESULTS, ROOT

START_MS = 1_640_995_200_000  # 2022-01-01
DAY_MS = 86_400_000


def write_history(path: Path, users: int, months: int, seed: int = 5) -> int:
    """The history as JSON lines in event-time order; returns the purchases written."""
    rng = random.Random(seed)
    span = months * 30 * DAY_MS
    events = []
    for user in range(users):
        purchases = 1
        while rng.random() < 0.66:  # geometric: 1 / (1 - 0.66) ≈ 3 on average
            purchases += 1
        for n in range(purchases):
            events.append(
                {
                    "event_id": f"c{user}-{n}",
                    "user_id": f"customer-{user:06d}",
                    "type": "purchase",
                    "ts": START_MS + rng.randrange(span),
                    "amount": round(rng.lognormvariate(3.5, 1.0), 2),
                }
            )
    events.sort(key=lambda e: (e["ts"], e["event_id"]))
    with gzip.open(path, "wt") as handle:
        for event in events:
            handle.write(json.dumps(event, separators=(",", ":")) + "\n")
    return len(events)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=25_000)
    parser.add_argument("--months", type=int, default=18)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="segstream-evaluate-") as tmp:
        history = Path(tmp) / "history.jsonl.gz"
        purchases = write_history(history, args.users, args.months)
        print(f"{args.users:,} customers, {purchases:,} purchases over {args.months} months")
        started = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(
            [sys.executable, "-m", "stream", "evaluate", "--input", str(history), "--k", "4",
             "--seeds", str(args.seeds), "--out", str(Path(tmp) / "out")],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
        )  # fmt: skip
        wall = time.perf_counter() - started
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            raise SystemExit(f"evaluate exited {done.returncode}:\n{done.stderr[-3000:]}")
        report = json.loads((Path(tmp) / "out" / "report.json").read_text())
    cpu = usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime
    peak_mb = usage.ru_maxrss / 1024  # Linux: KiB, the largest child (a worker) at its peak
    found = {
        "users": args.users,
        "months": args.months,
        "purchases": purchases,
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_worker_mb": peak_mb,
        "evaluated_users": report.get("users", {}).get("evaluated"),
        "expired_users": report.get("users", {}).get("expired"),
        "cost_ratio_median": report["cost_ratio"]["median"],
        "ari_median": report["ari"]["median"],
    }
    print(
        f"evaluate: {wall:.0f} s wall, {cpu:.0f} s CPU, largest worker {peak_mb:,.0f} MB; "
        f"{found['evaluated_users']:,} users judged, {found['expired_users']:,} expired; "
        f"cost ratio {found['cost_ratio_median']:.3f}, ARI {found['ari_median']:.3f}"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "evaluate.json").write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
