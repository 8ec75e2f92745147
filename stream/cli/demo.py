"""``segstream demo``: the whole pipeline in-process on the in-memory twins, no servers needed.

Simulated shoppers (``stream/feeds/simulator.py``) stream through the real operators and the real
River trainer; segment changes scroll by, then a table shows the segments found.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

from operators.features import features_at
from operators.record import unpack_state
from operators.segments import SegmentSnapshot, predict_many
from stream.feeds.simulator import encode, generate_events, persona_of
from stream.ports import Partition
from stream.settings import Settings
from stream.twins.broker import InMemoryBroker
from stream.twins.state_store import InMemoryStateStore
from stream.wiring import build_processor, in_memory_parts

DEMO_SEGMENT_FEATURES = "recency_days,frequency,monetary,avg_order_value"
# What the table shows per segment: (feature, column title, format).
_COLUMNS = (
    ("recency_days", "days since buy", ".0f"),
    ("frequency", "buys", ".1f"),
    ("monetary", "spend", ".0f"),
    ("avg_order_value", "avg order", ".0f"),
    ("views_30d", "views 30d", ".1f"),
    ("carts_30d", "carts 30d", ".1f"),
)
# (word when high, word when low) per feature, for the "characterised by" column.
_LABELS = {
    "recency_days": ("lapsed", "recent"),
    "frequency": ("frequent", "rarely buys"),
    "monetary": ("high spend", "low spend"),
    "avg_order_value": ("big baskets", "small baskets"),
    "views_30d": ("browsing", "few views"),
    "carts_30d": ("carting", "few carts"),
}


def run_demo(
    settings: Settings, users: int, days: float, seed: int, out: Callable[[str], None] = print
) -> dict[int, int]:
    """Run the demo, print as it goes, and return the final segment sizes."""
    broker = InMemoryBroker()
    events = list(generate_events(users, seed=seed, days=days))
    for event in events:
        key, value = encode(event)
        broker.append(settings.input_topic, key, value)
    end_ms = max(int(e["ts"]) for e in events)
    out(f"Generated {len(events):,} events for {users:,} simulated shoppers over {days:g} days.")
    out(
        "Streaming them through segstream (online k-means on River, k="
        f"{settings.segments}); a sample of the segment changes:\n"
    )

    parts = in_memory_parts(settings, broker)
    processor = build_processor(settings, parts)
    started = time.perf_counter()
    seen_changes = 0
    every = max(1, users // 20)
    read: dict[Partition, int] = {}  # records of the output topic shown so far, per partition
    while processor.run_once():
        for partition in list(broker.logs):
            if partition.topic != settings.output_topic:
                continue
            for record in broker.read(partition, read.get(partition, 0)):
                doc = json.loads(record.value or b"{}")  # the change topic has no tombstones
                if str(doc.get("kind")).startswith("segment_"):
                    out(_describe_lineage(doc))  # a segment created, retired or merged: rare
                    continue
                if doc.get("kind") != "user_changed":
                    continue  # a user expired, a model republished
                seen_changes += 1
                if seen_changes % every == 0:
                    out(_describe_change(doc))
            read[partition] = len(broker.logs[partition])
    elapsed = time.perf_counter() - started
    version = processor.snapshot.version if processor.snapshot else 0
    out(
        f"\n{len(events):,} events in {elapsed:.1f} s ({len(events) / elapsed:,.0f} events/s), "
        f"{seen_changes:,} segment changes, segment model v{version}."
    )

    store = parts.state_store
    assert isinstance(store, InMemoryStateStore)
    return _print_segments(settings, processor.snapshot, store, end_ms, seed, out)


def _describe_lineage(doc: dict[str, object]) -> str:
    what = str(doc["kind"]).removeprefix("segment_")
    into = f" into {doc['merged_into']}" if "merged_into" in doc else ""
    name = f" ({doc['name']})" if "name" in doc else ""
    return f"  -- model v{doc['model_version']}: segment {doc['segment']} {what}{into}{name}"


def _describe_change(change: dict[str, object]) -> str:
    when = datetime.fromtimestamp(int(str(change["event_time_ms"])) / 1000, UTC)
    before = change["segment_before"]
    features = change["features"]
    assert isinstance(features, dict)
    return (
        f"  {when:%Y-%m-%d %H:%M}  {change['user_id']}  segment "
        f"{'-' if before is None else before} -> {change['segment_after']}   "
        + "  ".join(f"{name} {value:.1f}" for name, value in features.items())
    )


def _print_segments(
    settings: Settings,
    snapshot: SegmentSnapshot | None,
    store: InMemoryStateStore,
    end_ms: int,
    seed: int,
    out: Callable[[str], None],
) -> dict[int, int]:
    members: dict[int, list[dict[str, float]]] = defaultdict(list)
    personas: dict[int, Counter[str]] = defaultdict(Counter)
    users = {
        uid: features_at(unpack_state(packed), end_ms) for uid, packed in store.users().items()
    }
    for (uid, features), segment in zip(
        users.items(), predict_many(snapshot, users.values()), strict=True
    ):
        members[segment].append(features)
        personas[segment][persona_of(int(uid.split("-")[1]), seed).name] += 1
    total = sum(len(m) for m in members.values())
    shown = [name for name, _, _ in _COLUMNS]
    overall = {f: statistics.fmean(x[f] for m in members.values() for x in m) for f in shown}
    out(f"\nSegments at the end of the stream ({total:,} users, features as of the last event):\n")
    header = (
        f"{'seg':>3} {'users':>6} {'share':>6} "
        + " ".join(f"{title:>{len(title)}}" for _, title, _ in _COLUMNS)
        + f"  {'mostly (simulated persona)':<30} characterised by"
    )
    out(header)
    out("-" * len(header))
    for segment in sorted(members):
        rows = members[segment]
        mean = {f: statistics.fmean(x[f] for x in rows) for f in shown}
        persona, count = personas[segment].most_common(1)[0]
        cells = " ".join(f"{mean[name]:>{len(title)}{fmt}}" for name, title, fmt in _COLUMNS)
        out(
            f"{segment:>3} {len(rows):>6} {len(rows) / total:>6.0%} {cells}  "
            f"{f'{persona} ({count / len(rows):.0%})':<30} {_characterise(mean, overall)}"
        )
    out(
        "\n'buys' and 'spend' are lifetime totals; '30d' columns are 30-day exponentially "
        "weighted windows. Next: README.md, 'Run it on Kafka and Redis'."
    )
    return {segment: len(rows) for segment, rows in members.items()}


def _characterise(mean: dict[str, float], overall: dict[str, float]) -> str:
    ratios = sorted(((mean[f] + 1e-9) / (overall[f] + 1e-9), f) for f in mean)
    words = []
    for ratio, feature in (ratios[-1], ratios[0]):
        high, low = _LABELS[feature]
        if ratio > 1.25:
            words.append(high)
        elif ratio < 0.8:
            words.append(low)
    return ", ".join(dict.fromkeys(words)) or "average"
