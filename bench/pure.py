"""Cost of the pure per-event path (decode + process_events), in µs per event, median of runs.

.venv/bin/python bench/pure.py [--events 100000 --runs 5]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from operators.decoding import decode_event
from operators.events import Event
from operators.pipeline import PipelineConfig, process_events
from operators.segments import SegmentSnapshot
from stream.feeds.simulator import encode, generate_events

RFM = ("recency_days", "frequency", "monetary")
SNAPSHOT = SegmentSnapshot(
    version=1,
    features=RFM,
    means=(2.0, 0.5, 1.0),
    stds=(1.0, 0.5, 2.0),
    centers=((1, -1, -1), (0, 1, 1), (-1, 0, 0), (-1, 1, 2)),
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    messages = [
        encode(e)
        for e in itertools.islice(generate_events(10_000, seed=1, sessions_scale=0.25), args.events)
    ]
    config = PipelineConfig(RFM, 250)
    decode_us, process_us = [], []
    for _ in range(args.runs):
        started = time.perf_counter()
        events = [decode_event(k, v) for k, v in messages]
        decoded = time.perf_counter()
        valid = [e for e in events if isinstance(e, Event)]
        process_events({}, valid, SNAPSHOT, config)
        done = time.perf_counter()
        decode_us.append((decoded - started) / len(messages) * 1e6)
        process_us.append((done - decoded) / len(messages) * 1e6)
    print(
        f"decode {statistics.median(decode_us):.1f} µs/event, "
        f"process_events {statistics.median(process_us):.1f} µs/event "
        f"(median of {args.runs} runs, {len(messages):,} events)"
    )


if __name__ == "__main__":
    main()
