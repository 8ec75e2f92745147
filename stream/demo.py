"""``segstream demo``: the whole pipeline in-process on the in-memory twins, no servers needed.

Simulated shoppers (``stream/generator.py``) stream through the real operators and the real
River trainer; segment changes scroll by, then a table shows the segments found.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime

from operators.features import SEGMENT_FEATURES, segment_features, unpack_state
from operators.segments import SegmentSnapshot, assign_segment
from stream.generator import encode, generate_events, persona_of
from stream.memory import InMemoryBroker, InMemoryStateStore
from stream.settings import Settings
from stream.wiring import build_processor, in_memory_parts


def run_demo(settings: Settings, users: int, days: float, seed: int,
             out: Callable[[str], None] = print) -> dict[int, int]:
    """Run the demo, print as it goes, and return the final segment sizes."""
    broker = InMemoryBroker()
    events = list(generate_events(users, seed=seed, days=days))
    for event in events:
        key, value = encode(event)
        broker.append(settings.input_topic, key, value)
    end_ms = max(int(e["ts"]) for e in events)
    out(f"Generated {len(events):,} events for {users:,} simulated shoppers over {days:g} days.")
    out("Streaming them through segstream (River STREAMKMeans, k="
        f"{settings.segments}); a sample of the segment changes:\n")

    parts = in_memory_parts(settings, broker)
    processor = build_processor(settings, parts)
    started = time.perf_counter()
    seen_changes = 0
    shown = 0
    every = max(1, users // 20)
    while processor.run_once():
        changes = broker.records(settings.output_topic)
        for record in changes[seen_changes:]:
            seen_changes += 1
            if seen_changes % every == 0:
                out(_describe_change(json.loads(record.value)))
                shown += 1
    elapsed = time.perf_counter() - started
    version = processor.snapshot.version if processor.snapshot else 0
    out(f"\n{len(events):,} events in {elapsed:.1f} s ({len(events) / elapsed:,.0f} events/s), "
        f"{seen_changes:,} segment changes, segment model v{version}.")

    store = parts.state_store
    assert isinstance(store, InMemoryStateStore)
    return _print_segments(settings, processor.snapshot, store, end_ms, seed, out)


def _describe_change(change: dict[str, object]) -> str:
    when = datetime.fromtimestamp(int(str(change["event_time_ms"])) / 1000, UTC)
    before = change["segment_before"]
    features = change["features"]
    assert isinstance(features, dict)
    return (
        f"  {when:%Y-%m-%d %H:%M}  {change['user_id']}  segment "
        f"{'-' if before is None else before} -> {change['segment_after']}   "
        f"views {features['recent_views']:.1f}  carts {features['recent_carts']:.1f}  "
        f"purchases {features['recent_purchases']:.1f}  spend {features['recent_spend']:.0f}  "
        f"days since purchase {features['days_since_purchase']:.0f}"
    )


def _print_segments(
    settings: Settings, snapshot: SegmentSnapshot | None, store: InMemoryStateStore,
    end_ms: int, seed: int, out: Callable[[str], None],
) -> dict[int, int]:
    members: dict[int, list[dict[str, float]]] = defaultdict(list)
    personas: dict[int, Counter[str]] = defaultdict(Counter)
    for uid, packed in store.users().items():
        features = segment_features(unpack_state(packed), end_ms, settings.half_life_ms)
        segment = assign_segment(snapshot, features)
        members[segment].append(features)
        personas[segment][persona_of(int(uid.split("-")[1]), seed).name] += 1
    total = sum(len(m) for m in members.values())
    overall = {f: statistics.fmean(x[f] for m in members.values() for x in m)
               for f in SEGMENT_FEATURES}
    out(f"\nSegments at the end of the stream ({total:,} users, features as of the last event):\n")
    header = (f"{'seg':>3} {'users':>6} {'share':>6} {'views':>6} {'carts':>6} {'buys':>6} "
              f"{'spend':>7} {'days since buy':>15}  {'mostly (simulated persona)':<30} "
              "characterised by")
    out(header)
    out("-" * len(header))
    for segment in sorted(members):
        rows = members[segment]
        mean = {f: statistics.fmean(x[f] for x in rows) for f in SEGMENT_FEATURES}
        persona, count = personas[segment].most_common(1)[0]
        out(f"{segment:>3} {len(rows):>6} {len(rows) / total:>6.0%} {mean['recent_views']:>6.1f} "
            f"{mean['recent_carts']:>6.1f} {mean['recent_purchases']:>6.1f} "
            f"{mean['recent_spend']:>7.0f} {mean['days_since_purchase']:>15.0f}  "
            f"{f'{persona} ({count / len(rows):.0%})':<30} {_characterise(mean, overall)}")
    out("\n'views', 'carts', 'buys' and 'spend' decay with a "
        f"{settings.half_life_days:g}-day half-life. Next: README.md, 'Run it on Kafka and Redis'.")
    return {segment: len(rows) for segment, rows in members.items()}


def _characterise(mean: dict[str, float], overall: dict[str, float]) -> str:
    labels = {"recent_views": "browsing", "recent_carts": "carting",
              "recent_purchases": "buying", "recent_spend": "spend",
              "days_since_purchase": "days since purchase"}
    ratios = sorted(
        ((mean[f] + 1e-9) / (overall[f] + 1e-9), f) for f in SEGMENT_FEATURES
    )
    words = []
    for ratio, feature in (ratios[-1], ratios[0]):
        level = "high" if ratio > 1.25 else "low" if ratio < 0.8 else None
        if level:
            words.append(f"{level} {labels[feature]}")
    return ", ".join(dict.fromkeys(words)) or "average"
