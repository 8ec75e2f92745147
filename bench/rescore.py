"""CPU of one re-scoring in the operators, alone (no store, no broker): ``run_batch`` with no
events and every user due once, on the records and open labels a real stream left.

The bench stream (``--users`` generated shoppers, a quarter of them sampled for training and
labels, as by default) is run through ``run_batch`` in batches of ``--batch`` events with a
segment model and the default tags' models; then, for ``--rounds`` days of event time, every
user is re-scored once a day in batches of ``--batch`` users, and the CPU per re-scoring is
reported (median of the rounds), with the share of those re-scorings that changed something.

    .venv/bin/python bench/rescore.py [--users 20000 --batch 5000 --rounds 5]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pure import SNAPSHOT  # the same model as the pure path's bench

from operators.decoding import decode_event
from operators.events import Event
from operators.features import DAY_MS
from operators.pipeline import run_batch
from operators.tags import TagModel
from stream.feeds.simulator import encode, generate_events
from stream.settings import Settings
from stream.wiring import pipeline_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    config = pipeline_config(Settings())
    models = {
        tag.name: TagModel(
            tag.name,
            1,
            tag.features,
            means=(0.0,) * len(tag.features),
            stds=(1.0,) * len(tag.features),
            weights=(0.1,) * len(tag.features),
            intercept=-1.0,
            ready=True,
        )
        for tag in config.tags
        if tag.kind == "predictive"
    }
    stream = generate_events(args.users, seed=1, sessions_scale=0.25)
    events = []
    for key, value in (encode(e) for e in itertools.islice(stream, args.events)):
        decoded = decode_event(key, value)
        assert isinstance(decoded, Event)
        events.append(decoded)
    stored: dict[str, bytes] = {}
    labels: dict[str, bytes] = {}
    watermark = 0
    for start in range(0, len(events), args.batch):
        chunk = events[start : start + args.batch]
        active = {e.user_id for e in chunk}
        out = run_batch(
            {u: stored[u] for u in active if u in stored},
            chunk,
            SNAPSHOT,
            config,
            watermark,
            (),
            models,
            {u: labels[u] for u in active if u in labels},
        )
        stored.update(out.records)
        labels.update(out.pending)
        watermark = out.watermark_ms
    costs, changed = [], []
    for _ in range(args.rounds + 1):  # the first catches up the days since each user's events
        watermark += DAY_MS
        users = sorted(stored)
        spent, moved, rescored = 0.0, 0, 0
        for start in range(0, len(users), args.batch):
            due = users[start : start + args.batch]
            batch_stored = {u: stored[u] for u in due}
            batch_labels = {u: labels[u] for u in due if u in labels}
            began = time.process_time()
            out = run_batch(
                batch_stored, [], SNAPSHOT, config, watermark, due, models, batch_labels
            )
            spent += time.process_time() - began
            stored.update(out.records)
            labels.update(out.pending)
            moved += len(out.changes)
            rescored += out.rescored
        costs.append(spent / max(rescored, 1) * 1e6)
        changed.append(moved / max(rescored, 1))
    costs, changed = costs[1:], changed[1:]
    print(
        f"{len(stored):,} users re-scored once a day for {args.rounds} days: "
        f"{statistics.median(costs):.2f} us of CPU per re-scoring in the operators "
        f"({statistics.median(changed):.1%} of them changed something)"
    )


if __name__ == "__main__":
    main()
