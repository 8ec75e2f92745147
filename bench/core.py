"""CPU cost of the whole processor per event, in process (in-memory twins of Kafka and Redis).

The bench stream of ``bench/throughput.py`` (generated shoppers), run through the processor
built as ``serve`` builds it, with default settings: tags on, daily re-scoring, training on.
Reports CPU µs per event (process time, so other load on the machine does not count) and the
re-scorings per event, for the defaults and the issue's two lighter configurations (tags off;
weekly re-scoring), medians of ``--runs`` interleaved runs; writes bench/results/core.json.
``--env NAME=VALUE`` measures one configuration instead and ``--profile`` prints cProfile's
view; neither writes core.json.

    .venv/bin/python bench/core.py [--events 200000 --users 20000 --runs 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import itertools
import json
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry

from stream.feeds.simulator import encode, generate_events
from stream.settings import Settings
from stream.twins.broker import InMemoryBroker
from stream.wiring import build_processor, in_memory_parts

CONFIGURATIONS = {
    "defaults": {},
    "tags off": {"SEGSTREAM_TAGS": "[]"},
    "weekly re-scoring": {"SEGSTREAM_RESCORE_INTERVAL_S": "604800"},
}


def run(messages: list[tuple[bytes, bytes]], env: dict[str, str], profile: bool) -> dict[str, Any]:
    settings = Settings.from_env(env)
    broker = InMemoryBroker()
    for key, value in messages:
        broker.append(settings.input_topic, key, value)
    registry = CollectorRegistry()
    processor = build_processor(settings, in_memory_parts(settings, broker), registry=registry)
    profiler = cProfile.Profile() if profile else None
    started = time.process_time()
    if profiler:
        profiler.enable()
    while processor.run_once():
        pass
    if profiler:
        profiler.disable()
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(50)
        stats.sort_stats("tottime").print_stats(40)
    cpu = time.process_time() - started
    rescored = registry.get_sample_value("segstream_users_rescored_total") or 0.0
    return {
        "cpu_us_per_event": cpu / len(messages) * 1e6,
        "rescorings_per_event": rescored / len(messages),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE setting")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    configs = {"custom": dict(e.split("=", 1) for e in args.env)} if args.env else CONFIGURATIONS
    events = generate_events(args.users, seed=1, sessions_scale=0.25)
    messages = [encode(e) for e in itertools.islice(events, args.events)]
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    for _ in range(args.runs):  # interleaved, so drift in the machine's load spreads evenly
        for name, env in configs.items():
            rows[name].append(run(messages, env, args.profile))
    report = {
        name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for name, runs in rows.items()
    }
    print(f"{len(messages):,} events, {args.users:,} users; medians of {args.runs} runs")
    print(
        f"{'configuration':<24} {'CPU us/event':>12} {'events/s per core':>18} {'rescorings':>10}"
    )
    for name, m in report.items():
        cpu = m["cpu_us_per_event"]
        print(f"{name:<24} {cpu:>12.1f} {1e6 / cpu:>18,.0f} {m['rescorings_per_event']:>10.2f}")
    if args.env or args.profile:
        return  # a one-off look: core.json keeps the standard configurations' figures
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    document = {"events": len(messages), "users": args.users, "median": report, "runs": rows}
    (out / "core.json").write_text(json.dumps(document, indent=1))


if __name__ == "__main__":
    main()
