"""``segstream replay`` and ``segstream evaluate``: a history file (JSON lines or CSV) through
the pipeline in event time, and the evaluation of its segments against offline k-means."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stream.settings import Settings


def history_arguments(parser: argparse.ArgumentParser, positional: bool = True) -> None:
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


def history_command(args: argparse.Namespace, settings: Settings) -> int:
    from stream.feeds.history import PRESETS, CsvMapping, HistoryError, read_history

    mapping: CsvMapping | None = None
    if args.preset:
        mapping = PRESETS[args.preset]
    elif args.user_column or args.time_column:
        if not (args.user_column and args.time_column):
            print("segstream: a CSV needs --user-column and --time-column", file=sys.stderr)
            return 2
        mapping = CsvMapping(
            user=args.user_column,
            time=args.time_column,
            amount=args.amount_column,
            quantity=args.quantity_column,
            price=args.price_column,
            type=args.type_column,
            invoice=args.invoice_column,
            category=args.category_column,
            time_format=args.time_format,
            delimiter=args.delimiter,
            cancel_prefix=args.cancel_prefix,
        )
    try:
        events = read_history(args.input, mapping)
    except (HistoryError, OSError) as exc:
        print(f"segstream: {exc}", file=sys.stderr)
        return 2
    if not events:
        print(f"segstream: no events in {args.input}", file=sys.stderr)
        return 2
    if args.command == "evaluate":
        from stream.evaluation.run import EvaluationError, evaluate

        try:
            report = evaluate(
                events,
                args.out,
                k=args.k,
                seeds=args.seeds,
                segment_features=args.segment_features.split(","),
                tags=settings.tags,
            )
        except EvaluationError as exc:
            print(f"segstream: {exc}", file=sys.stderr)
            return 2
        print((args.out / "report.md").read_text())
        print(
            f"cost ratio median {report['cost_ratio']['median']:.3f}, "
            f"ARI median {report['ari']['median']:.3f}; files in {args.out}; "
            f"dead-lettered: {_by_reason(report['dead_lettered'])}"
        )
        return 0
    from operators.features import DAY_MS
    from stream.replay import progress_bar, replay_events

    end_ms = max(int(e["ts"]) for e in events) + DAY_MS
    replayed = replay_events(
        settings, events, until_ms=end_ms, kafka=args.kafka, progress=progress_bar()
    )
    snapshot = replayed.processor.snapshot
    dead = replayed.processor.metrics.dead_lettered()
    applied = replayed.events - sum(dead.values())
    print(
        f"replayed {replayed.events:,} events from {args.input}: {applied:,} valid, "
        f"{sum(dead.values()):,} dead-lettered ({_by_reason(dead)}); segment model "
        f"v{snapshot.version if snapshot else 0}; changes on {settings.output_topic}"
        + ("" if args.kafka else " (in memory)")
    )
    if applied == 0:
        print(
            "segstream: every event was dead-lettered; see the reasons above (an old "
            "history? set SEGSTREAM_MIN_EVENT_TIME)",
            file=sys.stderr,
        )
        return 1
    return 0


def _by_reason(counts: dict[str, int]) -> str:
    return (
        ", ".join(
            f"{reason}: {n:,}" for reason, n in sorted(counts.items(), key=lambda item: -item[1])
        )
        or "none"
    )
