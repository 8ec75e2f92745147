"""Chaos: kill -9 at random moments, consumers added and removed mid-stream, a broker restart,
and on Redis Cluster a master killed too (its replica takes over), with the model frozen (a
published model file, ``SEGSTREAM_TRAINING=false``). The final state of every user (features,
segment, tags, seq, due index, open labels) and the segment sizes must equal an uninterrupted
run's, and the output topic must hold exactly the uninterrupted run's change events, in the
same order per user once exact repeats are dropped.

``make test`` runs it reduced; ``make chaos`` with ``SEGSTREAM_CHAOS_EVENTS`` (200,000) and
``SEGSTREAM_CHAOS_KILLS`` (10). The uninterrupted run is on the standalone Redis; the cluster
variant's chaos run on the cluster, so the two layouts are held to the same outputs too.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from stream.cli.users import inspect_user
from stream.feeds.simulator import generate_events
from stream.settings import Settings
from tests.support.cluster import fail_over, rejoin
from tests.support.model import frozen_service, trained_model
from tests.support.servers import CLUSTER_URL, end_offsets, redis_client, store_client
from tests.support.state import change_ids, differences, stored_state
from tests.support.supervisor import Supervisor

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
EVENTS = int(os.environ.get("SEGSTREAM_CHAOS_EVENTS", "20000"))
KILLS = int(os.environ.get("SEGSTREAM_CHAOS_KILLS", "3"))
SCALINGS = 4  # consumers added, then removed: 2 each
ROOT = Path(__file__).resolve().parents[2]


def first_occurrences(by_user: dict[str, list[dict[str, Any]]]) -> dict[str, list[str]]:
    """Each user's change ids in order, exact repeats (redone batches) dropped."""
    return {
        user: list(dict.fromkeys(c["change_id"] for c in changes))
        for user, changes in by_user.items()
    }


@pytest.mark.parametrize("store", ["redis", "cluster"])
def test_kills_rebalances_and_a_broker_restart_change_nothing(tmp_path: Path, store: str) -> None:
    client = redis_client()  # the uninterrupted run's
    on_cluster = {"SEGSTREAM_REDIS_URL": CLUSTER_URL} if store == "cluster" else {}
    events = list(itertools.islice(generate_events(EVENTS // 40 + 10, seed=31, days=60), EVENTS))
    model = trained_model(
        itertools.islice(generate_events(400, seed=3, days=40), 15_000), tmp_path / "model.json"
    )
    calm = frozen_service(
        tmp_path / "calm", tmp_path / "model.json", events, SEGSTREAM_MAX_BATCH_RECORDS="500"
    )
    chaos = frozen_service(
        tmp_path / "chaos",
        tmp_path / "model.json",
        events,
        SEGSTREAM_MAX_BATCH_RECORDS="500",
        **on_cluster,
    )
    chaos_client = store_client(store)
    supervisor: Supervisor | None = None
    try:
        started = time.monotonic()
        calm.start()
        calm.wait_for_offsets(client, end_offsets(calm.input_topic), timeout_s=900)
        assert calm.terminate() == 0
        calm_s = time.monotonic() - started

        seed = random.randrange(1 << 30)
        rng = random.Random(seed)
        actions = ["kill"] * KILLS + ["scale"] * SCALINGS + ["broker"]
        actions += ["failover"] * (1 + KILLS // 5) if store == "cluster" else []
        rng.shuffle(actions)
        moments = sorted(rng.uniform(0.05, 0.9) * len(events) for _ in actions)
        started = time.monotonic()
        supervisor = Supervisor(chaos, 2)
        deadline = time.monotonic() + 1800

        def progress() -> int:
            supervisor.watch()
            assert time.monotonic() < deadline, (
                f"stuck at {chaos.offsets(chaos_client)} (seed {seed})"
            )
            return sum(chaos.offsets(chaos_client).values())

        done = 0
        failovers: list[int] = []  # the ports of the masters killed
        for action, moment in zip(actions, moments, strict=True):
            # At the chosen moment, and only once the group made progress since the last one
            # (unless it has read everything: the events are all published before it starts).
            while progress() < min(max(moment, done + 200), len(events)):
                time.sleep(0.02)
            done = progress()
            if action == "kill":
                time.sleep(rng.uniform(0, 0.3))  # anywhere in a batch, not just after a save
                supervisor.kill_one(rng)
            elif action == "failover":  # the master of a partition the group is writing
                key = f"{chaos.prefix}:{{{chaos.input_topic}-{rng.randrange(4)}}}:offset"
                failovers.append(fail_over(chaos_client, key))
                rejoin(failovers[-1])
            elif action == "broker":
                subprocess.run(
                    [ROOT / "scripts/services.sh", "restart-kafka"], check=True, timeout=120
                )
            elif len(supervisor.copies) <= 2:
                supervisor.add()
            else:
                supervisor.remove()
        ends = {p: e for p, e in end_offsets(chaos.input_topic).items() if e}
        while chaos.offsets(chaos_client) != ends:
            progress()
            time.sleep(0.1)
        chaos_s = time.monotonic() - started
        stopped = supervisor.stop()
        assert all(code == 0 for code in stopped), (stopped, supervisor.logs())
        # No crash loop: a failover may cost each process one exit, 75 if the replica had
        # missed writes (the restart re-applies them), 69 if the election outlasted retries.
        tally = supervisor.tally
        assert len(tally.exits) <= len(failovers) * 4, tally.exits
        assert set(tally.exits) <= {69, 75}, tally.exits

        calm_state = stored_state(client, calm.prefix, calm.input_topic)
        chaos_state = stored_state(chaos_client, chaos.prefix, chaos.input_topic)
        mismatches = differences(calm_state, chaos_state)
        assert mismatches == [], f"seed {seed}: {mismatches[:20]}"
        users = sum(len(p.users) for p in calm_state.values())
        assert users > EVENTS // 50
        # Not a vacuous comparison: the frozen model segments, tags and opens labels.
        every = [s for p in calm_state.values() for s in p.users.values()]
        assert len({s.segment for s in every}) >= 3 and any(s.tags for s in every)
        assert any(p.labels for p in calm_state.values())

        calm_ids, calm_changes = change_ids(calm.output_topic)
        chaos_ids, chaos_changes = change_ids(chaos.output_topic)
        assert len(calm_ids) == len(set(calm_ids)) > 0
        assert set(chaos_ids) == set(calm_ids)
        assert first_occurrences(chaos_changes) == first_occurrences(calm_changes)
        assert set(change_ids(chaos.alert_topic)[0]) == set(change_ids(calm.alert_topic)[0])
        # What an operator sees with `segstream inspect` agrees too.
        for user in rng.sample(sorted(calm_state[0].users), 10):
            assert inspect_user(Settings.from_env(chaos.env), user, chaos_client) == inspect_user(
                Settings.from_env(calm.env), user, client
            )

        print(
            f"\nchaos on {store} (seed {seed}): {len(events):,} events, {tally.kills} kill -9, "
            f"{len(failovers)} masters killed, "
            f"{tally.added} consumers added and {tally.removed} removed, 1 broker restart, "
            f"{len(tally.exits)} other exits {tally.exits}, {tally.restarts} restarts; "
            f"{users:,} users compared (features, segment, tags, seq, due index, open "
            f"labels, segment sizes): 0 mismatches; {len(calm_ids):,} change events, "
            f"{len(chaos_ids) - len(calm_ids):,} repeats; {calm_s:.0f} s calm, "
            f"{chaos_s:.0f} s with chaos; model v{model['snapshot']['version']}"
        )
    finally:
        if supervisor is not None:
            supervisor.kill_all()
        calm.cleanup(client)
        chaos.cleanup(chaos_client)
