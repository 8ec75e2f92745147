"""An erasure reaches the user whichever partitioner placed its events (on the twins)."""

from __future__ import annotations

import json

from operators.record import unpack_state
from stream.feeds.erasure import request_erasure
from stream.feeds.simulator import encode, generate_events
from stream.ports import Partition
from stream.settings import Settings
from stream.twins.broker import InMemoryBroker, InMemorySink
from stream.twins.state_store import InMemoryStateStore
from stream.wiring import build_processor, in_memory_parts

SETTINGS = Settings(max_batch_records=300, snapshot_every_samples=500, train_sample_permille=1000)


def test_an_erasure_finds_users_placed_by_another_partitioner() -> None:
    broker = InMemoryBroker(partitions=4)
    events = list(generate_events(60, seed=3, days=20))
    users = sorted({e["user_id"] for e in events})
    # Another producer's partitioner: the twin's own hash plus one, so no user is where the
    # erase request's key would hash to.
    moved = {u: (hash_partition(u) + 1) % 4 for u in users}
    for event in events:
        key, value = encode(event)
        broker.append(SETTINGS.input_topic, key, value, partition=moved[event["user_id"]])
    parts = in_memory_parts(SETTINGS, broker)
    processor = build_processor(SETTINGS, parts)
    while processor.run_once():
        pass
    store = parts.state_store
    assert isinstance(store, InMemoryStateStore)
    erased, kept = users[:3], users[3:]
    assert set(erased) <= set(store.users())

    sink = InMemorySink(broker)
    ids = {
        user: request_erasure(SETTINGS.input_topic, user, "dpo@example.com", "api", sink)
        for user in erased
    }
    while processor.run_once():
        pass

    assert set(store.users()) == set(kept)
    changes = [json.loads(r.value or b"") for r in broker.records(SETTINGS.output_topic)]
    said = [c for c in changes if c["kind"] == "user_erased"]
    # One event per erased user, from the partition that held it: the others only audit.
    assert sorted((c["user_id"], c["event_id"]) for c in said) == sorted(ids.items())
    assert all(c["found"] for c in said)
    for user in erased:
        membership = [
            r for r in broker.records(SETTINGS.membership_topic) if r.key == user.encode()
        ]
        assert membership[-1].value is None
    audits = {
        index: [json.loads(e) for e in store.erasures(Partition(SETTINGS.input_topic, index))]
        for index in range(4)
    }
    for user, erase_id in ids.items():
        entries = {i: [e for e in a if e["erase_id"] == erase_id] for i, a in audits.items()}
        assert all(len(found) == 1 for found in entries.values())  # every partition audits it
        held = [i for i, found in entries.items() if found[0]["found"]]
        assert held == [moved[user]]
    assert all(unpack_state(b).events_total for b in store.users().values())


def hash_partition(user: str) -> int:
    return InMemoryBroker(partitions=4).append("probe", user.encode(), b"").partition.index
