"""End to end on the local Redis Cluster: serve, the API, inspect and erase, with the stored
state equal to the same stream's on the standalone Redis."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from stream.cli.users import inspect_user
from stream.feeds.simulator import generate_events
from stream.settings import Settings
from tests.e2e.conftest import Services
from tests.support.api import TOKEN, start_api
from tests.support.model import frozen_service, trained_model
from tests.support.servers import CLUSTER_URL, cluster_client, end_offsets, redis_client
from tests.support.state import differences, stored_state

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


def test_serve_api_inspect_and_erase_on_a_redis_cluster(services: Services, tmp_path: Path) -> None:
    cluster, standalone = cluster_client(), redis_client()
    trained_model(generate_events(200, seed=3, days=30), tmp_path / "model.json")
    events = list(itertools.islice(generate_events(300, seed=5, days=30), 4000))
    streams = {}
    for name, env in [("cluster", {"SEGSTREAM_REDIS_URL": CLUSTER_URL}), ("standalone", {})]:
        made = frozen_service(tmp_path / name, tmp_path / "model.json", events, **env)
        streams[name] = services.adopt(made)
    on_cluster, alone = streams["cluster"], streams["standalone"]
    on_cluster.start()
    alone.start()
    for service, client in [(on_cluster, cluster), (alone, standalone)]:
        service.wait_for_offsets(client, end_offsets(service.input_topic))
    # Each partition's keys in a slot of their own; the models' under their own tag.
    tag = f"{on_cluster.prefix}:{{{on_cluster.input_topic}"
    assert len({cluster.keyslot(f"{tag}-{p}}}:offset") for p in range(4)}) == 4
    assert cluster.hget(f"{on_cluster.prefix}:{{models}}:segments", "snapshot") is not None
    # The same stream and model on the standalone Redis leave the same state.
    mine = stored_state(cluster, on_cluster.prefix, on_cluster.input_topic)
    theirs = stored_state(standalone, alone.prefix, alone.input_topic)
    assert sum(len(p.users) for p in mine.values()) > 200
    assert differences(theirs, mine) == []

    api = start_api(on_cluster, tmp_path / "api.log")
    try:
        states = on_cluster.states(cluster)
        user = max((u for u, s in states.items() if s.segment >= 0), key=lambda u: states[u].seq)
        settings = Settings.from_env(on_cluster.env)
        deadline = time.monotonic() + 10
        while True:
            status, _, doc = api.call("GET", f"/v1/users/{user}")
            shown = inspect_user(settings, user)
            if doc == shown or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert status == 200 and doc == shown and doc["seq"] == states[user].seq
        cli = subprocess.run(
            [sys.executable, "-m", "stream", "inspect", user],
            env=on_cluster.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["seq"] == states[user].seq

        status, _, body = api.call("GET", "/v1/segments")
        assert status == 200
        sizes = {s["id"]: s["size"] for s in body["segments"]}
        placed_users = Counter(s.segment for s in states.values() if s.segment >= 0)
        assert {s: n for s, n in sizes.items() if n} == dict(placed_users)
        segment = next(iter(placed_users))
        status, _, named = api.call(
            "PUT", f"/v1/segments/{segment}/name", {"name": "regulars"}, token=TOKEN
        )
        assert status == 200 and named["name"] == "regulars"
        assert cluster.hget(f"{on_cluster.prefix}:{{models}}:segment-names", str(segment)) == (
            b"regulars"
        )

        erased = subprocess.run(
            [sys.executable, "-m", "stream", "erase", user, "--by", "dpo@example.com"],
            env=on_cluster.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert erased.returncode == 0, erased.stderr
        on_cluster.wait_for_offsets(cluster, end_offsets(on_cluster.input_topic))
        assert user not in on_cluster.states(cluster)
        assert inspect_user(settings, user) is None
        assert api.call("GET", f"/v1/users/{user}")[0] == 404
        audit = [
            json.loads(entry)
            for p in range(4)
            for entry in cluster.lrange(f"{tag}-{p}}}:erasures", 0, -1)
        ]
        assert sorted(e["found"] for e in audit) == [False, False, False, True]
    finally:
        api.process.terminate()
        api.process.wait(timeout=30)
