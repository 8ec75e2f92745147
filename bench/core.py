"""CPU cost of the whole processor per event, in process (in-memory twins of Kafka and Redis).

The bench stream of ``bench/throughput.py`` (generated shoppers), run through the processor
built as ``serve`` builds it, with default settings: tags on, daily re-scoring, training on.
Reports CPU µs per event (process time, so other load on the machine does not count) and the
re-scorings per event, medians of ``--runs`` interleaved runs, in two regimes:

- **replay**: the stream as stamped, 52 days of event time in 200,000 events (a replay of
  history: every shopper falls due for its daily re-scoring every few seconds), for the
  defaults and the two lighter configurations (tags off; weekly re-scoring);
- **live**: the first half of the stream as stamped (a warm-up, not measured, that publishes
  a model), then the second half re-stamped so that event time advances at ``--live-rate``
  events per second from the latest event time (a live stream: a model scores every event,
  and re-scorings come at a real stream's pace).

One re-scoring's cost is its own figure: the CPU the defaults spend beyond weekly re-scoring,
per re-scoring more. Writes bench/results/core.json. ``--env NAME=VALUE`` measures one
configuration instead and ``--profile`` prints cProfile's view; neither writes core.json.

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

from common import on_the_wall_clock
from prometheus_client import CollectorRegistry

from stream.feeds.simulator import encode, generate_events
from stream.settings import Settings
from stream.twins.broker import InMemoryBroker
from stream.wiring import build_processor, in_memory_parts, ready_to_serve

Messages = list[tuple[bytes, bytes]]
# name: (settings, regime)
CONFIGURATIONS = {
    "defaults": ({}, "replay"),
    "tags off": ({"SEGSTREAM_TAGS": "[]"}, "replay"),
    "weekly re-scoring": ({"SEGSTREAM_RESCORE_INTERVAL_S": "604800"}, "replay"),
    "live": ({}, "live"),
}


def run(warmup: Messages, messages: Messages, env: dict[str, str], profile: bool) -> dict[str, Any]:
    settings = Settings.from_env(env)
    broker = InMemoryBroker()
    registry = CollectorRegistry()
    processor = build_processor(settings, in_memory_parts(settings, broker), registry=registry)
    ready_to_serve()  # as serve does
    for key, value in warmup:
        broker.append(settings.input_topic, key, value)
    while processor.run_once():
        pass
    before = registry.get_sample_value("segstream_users_rescored_total") or 0.0
    if warmup and not registry.get_sample_value("segstream_model_version"):
        raise SystemExit("the warm-up published no model: make the stream longer")
    for key, value in messages:
        broker.append(settings.input_topic, key, value)
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
    rescored = (registry.get_sample_value("segstream_users_rescored_total") or 0.0) - before
    return {
        "cpu_us_per_event": cpu / len(messages) * 1e6,
        "rescorings_per_event": rescored / len(messages),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--live-rate", type=float, default=3000.0, help="events/s, live regime")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE setting")
    parser.add_argument("--regime", choices=("replay", "live"), default="replay", help="with --env")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    configs = CONFIGURATIONS
    if args.env:
        configs = {"custom": (dict(e.split("=", 1) for e in args.env), args.regime)}
    events = generate_events(args.users, seed=1, sessions_scale=0.25)
    messages = [encode(e) for e in itertools.islice(events, args.events)]
    streams = {"replay": ([], messages), "live": on_the_wall_clock(messages, args.live_rate)}
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    for _ in range(args.runs):  # interleaved, so drift in the machine's load spreads evenly
        for name, (env, regime) in configs.items():
            rows[name].append(run(*streams[regime], env, args.profile))
    report = {
        name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for name, runs in rows.items()
    }
    print(f"{len(messages):,} events, {args.users:,} users; medians of {args.runs} runs")
    print(
        f"{'configuration':<24} {'regime':<7} {'CPU us/event':>12} {'events/s per core':>18}"
        f" {'rescorings':>10}"
    )
    for name, m in report.items():
        cpu, regime = m["cpu_us_per_event"], configs[name][1]
        print(
            f"{name:<24} {regime:<7} {cpu:>12.1f} {1e6 / cpu:>18,.0f}"
            f" {m['rescorings_per_event']:>10.2f}"
        )
    rescoring = per_rescoring(report)
    if rescoring is not None:
        print(f"one re-scoring (defaults beyond weekly, per re-scoring more): {rescoring:.1f} us")
    if args.env or args.profile:
        return  # a one-off look: core.json keeps the standard configurations' figures
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    document = {
        "events": len(messages),
        "users": args.users,
        "live_rate": args.live_rate,
        "us_per_rescoring": rescoring,
        "median": report,
        "runs": rows,
    }
    (out / "core.json").write_text(json.dumps(document, indent=1))


def per_rescoring(report: dict[str, dict[str, float]]) -> float | None:
    """CPU µs of one re-scoring: what the defaults spend beyond weekly re-scoring on the same
    stream, per re-scoring more."""
    if "defaults" not in report or "weekly re-scoring" not in report:
        return None
    daily, weekly = report["defaults"], report["weekly re-scoring"]
    more = daily["rescorings_per_event"] - weekly["rescorings_per_event"]
    spent = daily["cpu_us_per_event"] - weekly["cpu_us_per_event"]
    return spent / more if more > 0 else None


if __name__ == "__main__":
    main()
