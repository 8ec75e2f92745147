"""The ``segstream`` command: serve, demo, replay, evaluate, inspect, erase, produce, and more."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from stream import __version__
from stream.cli.history import history_arguments
from stream.settings import Settings, describe_settings


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
    history_arguments(replay)
    replay.add_argument(
        "--kafka",
        action="store_true",
        help="produce to the input topic and consume with the real Kafka and "
        "Redis (default: in-memory twins)",
    )
    evaluate = commands.add_parser(
        "evaluate", help="replay a history file and judge the segments against offline k-means"
    )
    history_arguments(evaluate, positional=False)
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
    commands.add_parser(
        "migrate",
        help="upgrade Redis's keys from an earlier segstream's layout (stop every serve first)",
    )
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
    return COMMANDS[args.command](args, settings)


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from stream.cli.demo import DEMO_SEGMENT_FEATURES, run_demo

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


def _history(args: argparse.Namespace, settings: Settings) -> int:
    from stream.cli.history import history_command

    logging.getLogger().setLevel(logging.WARNING)  # the progress bar tells the story
    return history_command(args, settings)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from stream.cli.serve import serve

    return serve(settings)


def _api(args: argparse.Namespace, settings: Settings) -> int:
    from stream.api.app import run_api

    return run_api(settings)


def _inspect(args: argparse.Namespace, settings: Settings) -> int:
    from stream.cli.users import inspect_command

    return inspect_command(args, settings)


def _erase(args: argparse.Namespace, settings: Settings) -> int:
    from stream.cli.users import erase_command

    return erase_command(args, settings)


def _model(args: argparse.Namespace, settings: Settings) -> int:
    from stream.cli.model import model_command

    return model_command(args, settings)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    from stream.cli.model import migrate_command

    return migrate_command(settings)


def _produce(args: argparse.Namespace, settings: Settings) -> int:
    from stream.cli.topics import produce_command

    return produce_command(args, settings)


def _create_topics(args: argparse.Namespace, settings: Settings) -> int:
    from stream.cli.topics import create_topics_command

    return create_topics_command(args, settings)


# Each command's module is imported when it runs: ``demo`` never loads Kafka's or Redis's
# clients, ``api`` never loads River.
COMMANDS: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
    "serve": _serve,
    "demo": _demo,
    "replay": _history,
    "evaluate": _history,
    "inspect": _inspect,
    "api": _api,
    "erase": _erase,
    "model": _model,
    "migrate": _migrate,
    "produce": _produce,
    "create-topics": _create_topics,
}
