"""CPU cost of the whole processor per event, in process (in-memory twins of Kafka and Redis).

The bench stream of ``bench/throughput.py`` (generated shoppers), run through the processor
built as ``serve`` builds it, with default settings: tags on, daily re-scoring, training on.
Reports CPU µs per event (process time, so other load on the machine does not count), the
re-scorings per event, and where the time went by loop stage. Medians of ``--runs``.

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

from stream.generator import encode, generate_events
from stream.memory import InMemoryBroker
from stream.settings import Settings
from stream.wiring import build_processor, in_memory_parts


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
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
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
    env = dict(e.split("=", 1) for e in args.env)
    events = generate_events(args.users, seed=1, sessions_scale=0.25)
    messages = [encode(e) for e in itertools.islice(events, args.events)]
    rows = [run(messages, env, args.profile) for _ in range(args.runs)]
    summary = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(json.dumps({"runs": rows, "median": summary, "events": len(messages)}, indent=1))


if __name__ == "__main__":
    main()
