"""``segstream evaluate``: replay a history file, then judge the segments it produced.

Each of ``seeds`` runs replays the whole file through the service's loop on the in-memory twins
(model seed = run number), lets event time pass to one day after the last event so every user
is re-scored, and compares the final model's partition of the users who bought with an offline
scikit-learn k-means++ on the same standardized log features. Runs go in parallel processes.
The segments' stability is measured on a stationary synthetic stream, where every relabel of an
unchanged user is the model's fault. The predictive tags are judged by one more replay, with
the tags on, in parallel with the seeds (``stream.evaluation.tags``).
"""

from __future__ import annotations

import os
import statistics
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from operators.decoding import decode_event
from operators.events import EventLimits, Rejected
from operators.features import DAY_MS, features_at
from operators.record import unpack_state
from operators.segments import SegmentSnapshot, predict_many, segment_profiles
from stream.evaluation.segments import (
    relabel_shares,
    score_against_offline,
    standardized_log,
    stationary_population,
)
from stream.evaluation.tags import evaluate_tags
from stream.feeds.simulator import encode
from stream.models.segment_trainer import SegmentTrainer
from stream.ports import Record
from stream.replay import progress_bar, replay_events
from stream.settings import Settings
from stream.twins.broker import InMemorySink
from stream.twins.state_store import InMemoryStateStore

FEATURE_COLUMNS = ("recency_days", "frequency", "monetary")


@dataclass(frozen=True, slots=True)
class SeedRun:
    seed: int
    cost_ratio: float
    ari: float
    users: int  # the buyers the service kept, scored against an offline fit on the same
    training_samples: int
    model_version: int
    buyers_expired: int  # buyers whose state expired (idle too long) before the end
    expired_by_month: dict[str, int]  # every expired user, by the month (UTC) of its expiry


def evaluate(
    events: list[dict[str, Any]],
    out_dir: Path,
    *,
    k: int,
    segment_features: Sequence[str],
    seeds: int = 5,
    show_progress: bool = True,
    tags: str | None = None,
) -> dict[str, Any]:
    """Run the evaluation, write its files to ``out_dir`` and return the report.

    ``tags``: the tag definitions (JSON, as ``SEGSTREAM_TAGS``); the defaults if None.
    """
    buyers, rejected = screen(events)
    if buyers < max(10 * k, 50):
        raise EvaluationError(
            f"only {buyers:,} users with a valid purchase remain, too few to judge {k} "
            f"segments; {sum(rejected.values()):,} of {len(events):,} events would be "
            f"dead-lettered ({_reasons(rejected)}). Fix the input (or, for old histories, "
            "set SEGSTREAM_MIN_EVENT_TIME) and run again."
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    at_ms = max(int(e["ts"]) for e in events) + DAY_MS
    jobs = [
        (
            events,
            k,
            tuple(segment_features),
            seed,
            at_ms,
            out_dir if seed == 0 else None,
            show_progress and seed == 0,
        )
        for seed in range(seeds)
    ]
    tag_settings = Settings(
        segments=k,
        segment_features=",".join(segment_features),
        train_sample_permille=1000,
        snapshot_every_samples=5000,
        tags=Settings().tags if tags is None else tags,
    )
    workers = max(1, min(seeds + 1, os.cpu_count() or 1))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        tag_job = pool.submit(evaluate_tags, events, tag_settings, out_dir)  # the longest job
        runs = list(pool.map(_run_seed, *zip(*jobs, strict=True)))
        tag_reports = tag_job.result()
    raw, served = _stability(k, segment_features)
    report: dict[str, Any] = {
        "events": len(events),
        "k": k,
        "segment_features": list(segment_features),
        "evaluated_at_ms": at_ms,
        "runs": [asdict(r) for r in runs],
        # Users idle longer than the expiry left the service before the end: the figures
        # below judge the users it kept, against an offline fit on exactly those users.
        "users": {
            "evaluated": runs[0].users,
            "buyers_expired": runs[0].buyers_expired,
            "expired": sum(runs[0].expired_by_month.values()),
            "expired_by_month": runs[0].expired_by_month,
            "max_idle_days": Settings().max_idle_days,
        },
        "cost_ratio": {
            "median": statistics.median(r.cost_ratio for r in runs),
            "worst": max(r.cost_ratio for r in runs),
        },
        "ari": {
            "median": statistics.median(r.ari for r in runs),
            "worst": min(r.ari for r in runs),
        },
        "relabelled_per_window": {
            "raw_median": statistics.median(raw),
            "raw_max": max(raw),
            "served_median": statistics.median(served),
            "served_max": max(served),
            "windows": len(raw),
        },
        "tags": tag_reports,
    }
    from stream.evaluation.report import write_report

    report["dead_lettered"] = dict(rejected)
    write_report(out_dir, report)
    return report


class EvaluationError(Exception):
    """The input cannot be evaluated; the message says why and what to do."""


def screen(
    events: Sequence[dict[str, Any]], limits: EventLimits | None = None
) -> tuple[int, Counter[str]]:
    """(users with a valid purchase, events the decoder would reject by reason)."""
    limits = limits or EventLimits(min_ts_ms=Settings.from_env(os.environ).min_event_ms)
    buyers: set[str] = set()
    rejected: Counter[str] = Counter()
    for raw in events:
        decoded = decode_event(*encode(raw), limits)
        if isinstance(decoded, Rejected):
            rejected[decoded.reason] += 1
        elif decoded.type == "purchase":
            buyers.add(decoded.user_id)
    return len(buyers), rejected


def _reasons(counts: Counter[str]) -> str:
    return ", ".join(f"{reason}: {n:,}" for reason, n in counts.most_common())


def _run_seed(
    events: list[dict[str, Any]],
    k: int,
    segment_features: tuple[str, ...],
    seed: int,
    at_ms: int,
    out_dir: Path | None,
    show_progress: bool,
) -> SeedRun:
    settings = Settings(
        segments=k,
        segment_features=",".join(segment_features),
        model_seed=seed,
        # A history file is small next to a live stream: learn from every user. These runs
        # judge the segments; tags are left out so five of them fit in a test run.
        train_sample_permille=1000,
        snapshot_every_samples=5000,
        tags="[]",
    )
    replayed = replay_events(
        settings,
        events,
        until_ms=at_ms,
        progress=progress_bar() if show_progress else None,
        keep_output=lambda topic, value: value is not None and b'"user_expired"' in value,
    )
    trainer = replayed.processor.trainer
    assert trainer is not None
    snapshot, _ = trainer.snapshot()  # the final model, after the last re-scorings
    store = replayed.parts.state_store
    assert isinstance(store, InMemoryStateStore)
    buyers = {u: unpack_state(b) for u, b in sorted(store.users().items())}
    buyers = {u: s for u, s in buyers.items() if s.count("purchase")}
    # The service's own account of who expired and when: its user_expired change events.
    sink = replayed.parts.sink
    assert isinstance(sink, InMemorySink)
    expired = expiries(sink.broker.records(settings.output_topic))
    buyers_in_file = {str(e["user_id"]) for e in events if e.get("type") == "purchase"}
    rows = {u: features_at(s, at_ms) for u, s in buyers.items()}
    labels = predict_many(snapshot, rows.values())
    score = score_against_offline(
        standardized_log(list(rows.values()), segment_features), labels, k, seed
    )
    if out_dir is not None:
        _write_users(out_dir, rows, labels, snapshot)
    return SeedRun(
        seed,
        score.cost_ratio,
        score.ari,
        len(rows),
        trainer.samples,
        snapshot.version,
        len((buyers_in_file & set(expired)) - set(buyers)),
        dict(sorted(Counter(_month(at) for at in expired.values()).items())),
    )


def expiries(records: Sequence[Record]) -> dict[str, int]:
    """Each user whose state expired, with when (event time, ms) it last did, from the change
    topic's ``user_expired`` events."""
    found: dict[str, int] = {}
    for record in records:
        if record.value and b'"user_expired"' in record.value:
            change = orjson.loads(record.value)
            if change.get("kind") == "user_expired":
                found[change["user_id"]] = int(change["event_time_ms"])
    return found


def _month(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, tz=UTC).strftime("%Y-%m")


def _write_users(
    out_dir: Path, rows: dict[str, dict[str, float]], labels: list[int], snapshot: SegmentSnapshot
) -> None:
    from stream.evaluation.report import write_segment_files

    write_segment_files(
        out_dir, rows, labels, snapshot, FEATURE_COLUMNS, segment_profiles(snapshot)
    )


def _stability(k: int, segment_features: Sequence[str]) -> tuple[list[float], list[float]]:
    """Relabel shares of an unchanging population over a stationary stream of 100k samples."""
    names = tuple(segment_features)
    population = stationary_population(2000, seed=11, features=names)
    stream = stationary_population(100_000, seed=12, features=names)
    trainer = SegmentTrainer(names, k, snapshot_every=5000, seed=0)
    snapshots = []
    for vector in stream:
        trainer.learn_one(vector)
        if trainer.due():
            snapshots.append(trainer.snapshot()[0])
    defaults = Settings()
    return relabel_shares(snapshots, population, defaults.switch_margin, defaults.switch_after)
