"""`segstream replay` of the UCI Online Retail file, side by side with another commit's.

In each of R rounds (the order alternating), runs the whole command, reading the CSV
included, on this checkout and, with ``--baseline DIR`` (a checkout of another commit, e.g.
``git worktree add --detach DIR COMMIT``), on that one, with the same interpreter and
settings; times its wall clock and its CPU (user + system, from wait4). Both must count the
same events (read, valid, dead-lettered). Writes bench/results/replay.json.

    .venv/bin/python bench/replay.py [--baseline DIR] [--runs 3] [--file PATH]

The file: ``--file``, else ``SEGSTREAM_ONLINE_RETAIL``, else
../shared/data/online_retail/online_retail.csv.gz (where the tests look too).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import RESULTS, ROOT

# Where the tests find it too (docs/evaluation.md).
UCI = Path(
    os.environ.get(
        "SEGSTREAM_ONLINE_RETAIL",
        ROOT.parent / "shared" / "data" / "online_retail" / "online_retail.csv.gz",
    )
)


def replay(root: Path, file: Path) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds and the summary line of one `segstream replay`."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "stream", "replay", "--preset", "online-retail", str(file)],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    assert process.stdout is not None
    output = process.stdout.read().decode()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(f"replay in {root} exited {process.returncode}:\n{output}")
    summary = output.strip().splitlines()[-1]
    return wall, usage.ru_utime + usage.ru_stime, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", type=Path, default=UCI)
    parser.add_argument("--baseline", type=Path, help="checkout of a commit to compare with")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    (RESULTS / "replay.json").unlink(missing_ok=True)  # no stale figures in the report
    if not args.file.exists():
        raise SystemExit(
            f"bench/replay.py: no {args.file}; set SEGSTREAM_ONLINE_RETAIL or pass --file (the "
            "UCI Online Retail file: docs/evaluation.md)"
        )
    roots = {"head": ROOT, **({"baseline": args.baseline} if args.baseline else {})}
    rows = []
    for run in range(1, args.runs + 1):
        row: dict[str, float] = {}
        summaries = {}
        for name in list(roots)[:: 1 if run % 2 else -1]:
            wall, cpu, summaries[name] = replay(roots[name], args.file)
            row[f"{name}_wall_s"], row[f"{name}_cpu_s"] = wall, cpu
        if args.baseline:
            counts = {name: text.split("; segment model")[0] for name, text in summaries.items()}
            if counts["head"] != counts["baseline"]:
                raise SystemExit(f"the replays read different events:\n{summaries}")
            row["speedup_wall"] = row["baseline_wall_s"] / row["head_wall_s"]
            row["speedup_cpu"] = row["baseline_cpu_s"] / row["head_cpu_s"]
        rows.append(row)
        print(f"run {run}: " + ", ".join(f"{k} {v:.2f}" for k, v in row.items()), flush=True)
    median = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    line = f"medians of {args.runs} runs: replay {median['head_wall_s']:.1f} s"
    if args.baseline:
        line += (
            f" against {median['baseline_wall_s']:.1f} s for {args.baseline}: "
            f"{median['speedup_wall']:.1f}x faster ({median['speedup_cpu']:.1f}x in CPU)"
        )
    print(line)
    print(f"  {summaries['head']}")
    RESULTS.mkdir(exist_ok=True)
    report = {
        "file": str(args.file),
        "baseline": str(args.baseline) if args.baseline else None,
        "summary": summaries["head"],
        "median": median,
        "runs": rows,
    }
    (RESULTS / "replay.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
