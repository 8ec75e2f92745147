"""Every output of the processor on the bench stream, as digests: for proving that a rewrite
of the core changes nothing (run it in both trees, compare the lines).

The bench stream of ``bench/core.py`` in both of its regimes, through the processor built as
``serve`` builds it (in-memory twins, a fixed clock): one SHA-256 per output topic (records
in order; a change's ``emitted_at_ms`` is the clock's and left out) and one over every stored
user record, label and due time, with counts. Identical lines: identical outputs.

    .venv/bin/python bench/outputs.py [--events 100000 --users 10000] [--env NAME=VALUE]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
from common import on_the_wall_clock

from stream.feeds.simulator import encode, generate_events
from stream.settings import Settings
from stream.twins.broker import InMemoryBroker
from stream.twins.state_store import InMemoryStateStore
from stream.wiring import build_processor, in_memory_parts

Messages = list[tuple[bytes, bytes]]


class FixedClock:
    def __init__(self, at_s: float) -> None:
        self.at_s = at_s

    def time_s(self) -> float:
        return self.at_s


def digests(warmup: Messages, messages: Messages, env: dict[str, str]) -> list[str]:
    settings = Settings.from_env(env)
    broker = InMemoryBroker()
    parts = in_memory_parts(settings, broker)
    latest = max(orjson.loads(value)["ts"] for _, value in warmup + messages)
    processor = build_processor(settings, parts, clock=FixedClock(latest / 1000 + 60))
    for stream in (warmup, messages):
        for key, value in stream:
            broker.append(settings.input_topic, key, value)
        while processor.run_once():
            pass
    lines = []
    for topic in sorted({p.topic for p in broker.logs} - {settings.input_topic}):
        digest, count = hashlib.sha256(), 0
        for record in broker.records(topic):
            value = record.value or b""
            if value and value.startswith(b"{"):
                doc = orjson.loads(value)
                doc.pop("emitted_at_ms", None)
                value = orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)
            digest.update((record.key or b"") + b"\0" + value + b"\n")
            count += 1
        lines.append(f"{topic}: {count} records, {digest.hexdigest()[:16]}")
    store = parts.state_store
    assert isinstance(store, InMemoryStateStore)
    digest, users = hashlib.sha256(), 0
    for partition, data in sorted(store._data.items()):
        for user, packed in sorted(data.users.items()):
            due = data.dues._at.get(user, 0)
            labels = data.pending.get(user, b"")
            digest.update(f"{partition}/{user}/{due}/".encode() + packed + b"/" + labels)
            users += 1
        digest.update(f"{partition}:{data.watermark_ms}:{data.next_offset}".encode())
    lines.append(f"state: {users} users, {digest.hexdigest()[:16]}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE setting")
    args = parser.parse_args()
    env = dict(e.split("=", 1) for e in args.env)
    events = generate_events(args.users, seed=1, sessions_scale=0.25)
    messages = [encode(e) for e in itertools.islice(events, args.events)]
    for regime, (warmup, rest) in {
        "replay": ([], messages),
        "live": on_the_wall_clock(messages, 3000.0),
    }.items():
        for line in digests(warmup, rest, env):
            print(f"{regime} {line}")


if __name__ == "__main__":
    main()
