"""The ``segstream`` command: serve, demo, replay, evaluate, inspect, erase, produce, and more."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from stream import __version__
from stream.commands import history_command, model_command
from stream.settings import Settings, describe_settings

log = logging.getLogger("segstream")


def _settings_help() -> str:
    rows = [f"  {env:<34} {doc} (default: {default})" for env, default, doc in describe_settings()]
    return "settings (environment variables; SEGSTREAM_CONFIG names an optional TOML file):\n" + (
        "\n".join(rows)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="segstream",
        description="Streaming user segmentation on Kafka, Redis and River.",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"segstream {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve",
        help="consume events from Kafka until SIGTERM/SIGINT",
        epilog=_settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo = commands.add_parser("demo", help="run the pipeline in-process on simulated shoppers")
    demo.add_argument("--users", type=int, default=2000)
    demo.add_argument("--days", type=float, default=60.0)
    demo.add_argument("--seed", type=int, default=7)
    replay = commands.add_parser(
        "replay", help="feed a history file through the pipeline in event time"
    )
    _history_arguments(replay)
    replay.add_argument(
        "--kafka",
        action="store_true",
        help="produce to the input topic and consume with the real Kafka and "
        "Redis (default: in-memory twins)",
    )
    evaluate = commands.add_parser(
        "evaluate", help="replay a history file and judge the segments against offline k-means"
    )
    _history_arguments(evaluate, positional=False)
    evaluate.add_argument("--k", type=int, default=4, help="number of segments")
    evaluate.add_argument("--segment-features", default="recency_days,frequency,monetary")
    evaluate.add_argument("--seeds", type=int, default=5, help="model seeds to run")
    evaluate.add_argument("--out", type=Path, required=True, help="directory for the results")
    produce = commands.add_parser("produce", help="publish simulated events to the input topic")
    produce.add_argument("--users", type=int, default=1000)
    produce.add_argument("--days", type=float, default=60.0)
    produce.add_argument("--seed", type=int, default=7)
    produce.add_argument("--malformed", type=int, default=0, help="also send N malformed messages")
    produce.add_argument(
        "--start",
        default="latest",
        help="when the events start: 'latest' (default: an hour after the latest event on the "
        "topic, so a second run tops it up, ending now at the latest; 2026-01-01 on an empty "
        "topic), 'now' (the --days before now), or an ISO 8601 date",
    )
    inspect = commands.add_parser(
        "inspect", help="print a user's segment, tags, seq and features (JSON) from Redis"
    )
    inspect.add_argument("user_id")
    commands.add_parser("api", help="serve the query API (users, segments, names, erasure)")
    erase = commands.add_parser(
        "erase", help="erase a user: publish an erasure request, applied in order with its events"
    )
    erase.add_argument("user_id")
    erase.add_argument("--by", default=None, help="who asks, for the audit (default: $USER)")
    model = commands.add_parser(
        "model", help="export or import the published models (JSON), e.g. to freeze one"
    )
    model_commands = model.add_subparsers(dest="model_command", required=True)
    export = model_commands.add_parser("export", help="write the published models as JSON")
    export.add_argument("--out", type=Path, help="file to write (default: standard output)")
    imported = model_commands.add_parser(
        "import", help="publish models from a file written by `model export`"
    )
    imported.add_argument("file", type=Path)
    topics = commands.add_parser(
        "create-topics", help="create the input, output, DLQ, late, alert and membership topics"
    )
    topics.add_argument("--partitions", type=int, default=4)
    topics.add_argument("--replication", type=int, default=1)
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env(os.environ)
    except (ValueError, OSError) as exc:
        print(f"segstream: bad settings: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "serve":
        return serve(settings)
    if args.command == "demo":
        from stream.demo import DEMO_SEGMENT_FEATURES, run_demo

        # A small stream: train on every event and snapshot often, unless told otherwise.
        demo_defaults = {
            "SEGSTREAM_SNAPSHOT_EVERY_SAMPLES": "5000",
            "SEGSTREAM_TRAIN_SAMPLE_PERMILLE": "1000",
            # Basket size tells big spenders from bargain hunters.
            "SEGSTREAM_SEGMENT_FEATURES": DEMO_SEGMENT_FEATURES,
        }
        settings_demo = Settings.from_env({**demo_defaults, **os.environ})
        logging.getLogger().setLevel(logging.WARNING)
        run_demo(settings_demo, args.users, args.days, args.seed)
        return 0
    if args.command in ("replay", "evaluate"):
        logging.getLogger().setLevel(logging.WARNING)  # the progress bar tells the story
        return history_command(args, settings)
    if args.command == "inspect":
        import json

        from stream.inspect import inspect_user

        doc = inspect_user(settings, args.user_id)
        if doc is None:
            print(f"segstream: no state for user {args.user_id!r}", file=sys.stderr)
            return 1
        print(json.dumps(doc, indent=2))
        return 0
    if args.command == "api":
        from stream.api import run_api

        return run_api(settings)
    if args.command == "erase":
        from stream.tools import request_erasure

        by = args.by or os.environ.get("USER") or "unknown"
        erase_id = request_erasure(settings, args.user_id, by, "cli")
        print(f"{erase_id}: erasure of {args.user_id!r} published to {settings.input_topic}")
        return 0
    if args.command == "model":
        return model_command(args, settings)
    if args.command == "produce":
        from stream.tools import produce_simulated, simulation_window

        now_ms = int(time.time() * 1000)
        try:
            start_ms, days = simulation_window(settings, args.start, args.days, now_ms)
        except ValueError as exc:
            print(f"--start {args.start!r}: {exc}", file=sys.stderr)
            return 2  # a usage error, as argparse exits for its own
        sent = produce_simulated(
            settings, args.users, days, args.seed, args.malformed, start_ms, now_ms
        )
        began = datetime.fromtimestamp(start_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M")
        print(
            f"produced {sent:,} messages to {settings.input_topic} "
            f"(events over {days:g} days from {began} UTC)"
        )
        return 0
    from stream.tools import create_topics

    create_topics(settings, args.partitions, args.replication)
    return 0


def _history_arguments(parser: argparse.ArgumentParser, positional: bool = True) -> None:
    if positional:
        parser.add_argument("input", type=Path, help="JSON lines (.jsonl) or CSV, maybe .gz")
    else:
        parser.add_argument(
            "--input", type=Path, required=True, help="JSON lines (.jsonl) or CSV, maybe .gz"
        )
    parser.add_argument(
        "--preset", choices=["online-retail", "rees46"], help="column mapping of a known CSV file"
    )
    mapping = parser.add_argument_group("CSV column mapping (instead of --preset)")
    for name in ("user", "time", "amount", "quantity", "price", "type", "invoice", "category"):
        mapping.add_argument(f"--{name}-column", dest=f"{name}_column")
    mapping.add_argument(
        "--time-format",
        default="%Y-%m-%d %H:%M:%S",
        help="strptime format; times without a zone are UTC",
    )
    mapping.add_argument("--delimiter", default=",")
    mapping.add_argument("--cancel-prefix", help="invoices starting with this are cancels")


def serve(settings: Settings) -> int:
    """Run until SIGTERM or SIGINT; the batch in hand is finished before exiting."""
    from prometheus_client import CollectorRegistry

    from stream.errors import AssignmentFailed, DependencyError, StateLost
    from stream.failpoints import checkpoint_from_env
    from stream.http import HttpServer
    from stream.wiring import build_processor, kafka_redis_parts

    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current batch, then stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    registry = CollectorRegistry()
    try:
        parts = kafka_redis_parts(settings)
        processor = build_processor(
            settings, parts, registry=registry, checkpoint=checkpoint_from_env(os.environ)
        )
    except DependencyError as exc:
        log.error("cannot start: %s", exc)
        return 69  # EX_UNAVAILABLE: the supervisor should retry later
    stale_after_s = max(30.0, 10 * settings.poll_timeout_s)
    http = HttpServer(
        settings.http_host,
        settings.http_port,
        registry,
        healthy=lambda: processor.healthy(stale_after_s),
    )
    http.start()
    log.info(
        "segstream %s serving: %s -> %s (dlq %s), metrics on :%d",
        __version__,
        settings.input_topic,
        settings.output_topic,
        settings.dlq_topic,
        http.port,
    )
    code = 0
    try:
        processor.run(stop.is_set)
    except (DependencyError, AssignmentFailed) as exc:
        log.error("giving up: %s", exc)
        code = 69
    except StateLost:
        code = 75  # EX_TEMPFAIL: restart us; we rebuild the lost partitions from the log
    finally:
        http.close()
        for close in (parts.source.close, parts.sink.close, parts.state_store.close):
            try:
                close()
            except Exception as exc:  # closing is best effort; the state is already saved
                log.warning("error while closing: %s", exc)
    log.info("stopped after %d batches", processor.batches)
    return code
