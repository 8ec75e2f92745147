"""``segstream produce`` (simulated shoppers' events on the input topic) and ``segstream
create-topics``."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from stream.settings import Settings


def produce_command(args: argparse.Namespace, settings: Settings) -> int:
    from stream.feeds.produce import produce_simulated, simulation_window
    from stream.wiring import kafka_sink

    now_ms = int(time.time() * 1000)
    try:
        start_ms, days = simulation_window(settings, args.start, args.days, now_ms)
    except ValueError as exc:
        print(f"--start {args.start!r}: {exc}", file=sys.stderr)
        return 2  # a usage error, as argparse exits for its own
    producer = kafka_sink(settings, bulk=True)
    try:
        sent = produce_simulated(
            producer,
            settings.input_topic,
            args.users,
            days,
            args.seed,
            args.malformed,
            start_ms,
            now_ms,
        )
    finally:
        producer.close()
    began = datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
    print(
        f"produced {sent:,} messages to {settings.input_topic} "
        f"(events over {days:g} days from {began} UTC)"
    )
    return 0


def create_topics_command(args: argparse.Namespace, settings: Settings) -> int:
    from stream.kafka.topics import create_topics

    create_topics(settings, args.partitions, args.replication)
    return 0
