"""Redis keys of the layouts before Redis Cluster support (models without a hash tag, a key per
user): found, refused, migrated."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from operators.record import unpack_state
from stream.ports import Partition, PartitionWrite
from stream.redis.client import Client
from stream.redis.layout import (
    LayoutError,
    check_layout,
    legacy_keys,
    listpack_advice,
    migrate,
    unbucketed,
)
from stream.redis.model_store import RedisModelStore
from stream.redis.state_store import RedisStateStore
from tests.stream.test_model_store_contract import SNAPSHOT
from tests.stream.test_state_store_contract import rec
from tests.support.servers import REDIS_URL, PrivateRedis, store_client, unique

pytestmark = pytest.mark.redis
TOPIC = "events"
P0 = Partition(TOPIC, 0)


def write_unbucketed(client: Client, prefix: str, users: int) -> None:
    """A partition as versions with a key per user wrote it: records with a TTL, the due index
    by user, one labels hash."""
    tag = f"{prefix}:{{{TOPIC}-0}}"
    client.set(f"{tag}:owner", "old-token")
    client.set(f"{tag}:offset", 120)
    client.set(f"{tag}:watermark", 5_000)
    for n in range(users):
        due = 1_000 * (n + 1)
        client.set(f"{tag}:u:user-{n}", rec(due, n), ex=86_400)
        client.zadd(f"{tag}:due", {f"user-{n}": due})
        if n % 4 == 0:
            client.hset(f"{tag}:labels", f"user-{n}", f"labels-{n}")


@pytest.fixture
def earlier(request: pytest.FixtureRequest) -> Iterator[tuple[Client, str]]:
    """A standalone Redis holding one deployment's models in the earlier layout."""
    client = store_client("redis")
    prefix = unique("layout")
    store = RedisModelStore(client, prefix)
    store.save(SNAPSHOT, b"trainer-state")
    store.save_lineage({4: {"created_version": 1}})
    client.hset(store.names_key, "4", "bargain hunters")
    assert store.hold_trainer_lease("old-trainer", 60_000)
    for old, new in [
        ("model:segments", "segments"),
        ("segment-names", "segment-names"),
        ("segment-lineage", "segment-lineage"),
        ("model:trainer", "trainer"),
    ]:
        client.rename(f"{prefix}:{{models}}:{new}", f"{prefix}:{old}")
    write_unbucketed(client, prefix, 2500)
    yield client, prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def test_the_earlier_layout_is_refused_then_migrated(earlier: tuple[Client, str]) -> None:
    client, prefix = earlier
    assert len(legacy_keys(client, prefix)) == 4 and unbucketed(client, prefix, TOPIC) == [P0]
    with pytest.raises(LayoutError, match="segstream migrate"):
        check_layout(client, prefix, TOPIC)
    moved = migrate(client, prefix, TOPIC, 64)
    assert sorted(moved) == sorted(
        [
            *(
                f"{prefix}:{k}"
                for k in ("model:segments", "segment-names", "segment-lineage", "model:trainer")
            ),
            f"{P0}: 2500 users",
        ]
    )
    check_layout(client, prefix, TOPIC)  # no longer refused
    assert not list(client.scan_iter(f"{prefix}:*:u:*"))
    assert all(client.ttl(k) == -1 for k in client.scan_iter(f"{prefix}:*"))
    states = RedisStateStore(client, prefix, buckets=999)  # the migration's count is kept
    assert states.claim(P0) == 120 and states.buckets(P0) == 64
    users = [f"user-{n}" for n in range(2500)]
    loaded = states.load({P0: users})[P0]
    assert [unpack_state(loaded[u]).seq for u in users] == list(range(2500))
    pending = states.load_pending({P0: users})[P0]
    assert pending == {u: f"labels-{n}".encode() for n, u in enumerate(users) if n % 4 == 0}
    # The due index now bounds buckets: the users due by a time are found through it.
    found = set()
    while batch := states.due_users(P0, 300_000, 100):
        found |= set(batch)
        states.save({P0: PartitionWrite(120, 120, {u: rec(10**9, 0) for u in batch})})
    assert found == {f"user-{n}" for n in range(300)}
    store = RedisModelStore(client, prefix)
    assert store.load() == (SNAPSHOT, b"trainer-state")
    assert store.load_segment_names() == {4: "bargain hunters"}
    assert store.load_lineage() == {4: {"created_version": 1}}
    assert store.hold_trainer_lease("new-trainer", 1000)  # the old lease was dropped
    assert migrate(client, prefix, TOPIC, 64) == []  # a second run finds nothing to do


def test_migrate_will_not_overwrite_the_new_layout(earlier: tuple[Client, str]) -> None:
    client, prefix = earlier
    RedisModelStore(client, prefix).save(SNAPSHOT, None)  # a newer service ran here since
    with pytest.raises(LayoutError, match="both"):
        migrate(client, prefix, TOPIC, 64)
    assert client.exists(f"{prefix}:model:segments")  # nothing lost


def test_serve_and_the_api_exit_78_until_migrate_runs(earlier: tuple[Client, str]) -> None:
    _, prefix = earlier
    env = {
        **os.environ,
        "SEGSTREAM_REDIS_URL": REDIS_URL,
        "SEGSTREAM_KEY_PREFIX": prefix,
        "SEGSTREAM_INPUT_TOPIC": TOPIC,
    }
    for command in ("serve", "api"):
        refused = subprocess.run(
            [sys.executable, "-m", "stream", command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert refused.returncode == 78, refused.stderr
        assert "segstream migrate" in refused.stderr
    migrated = subprocess.run(
        [sys.executable, "-m", "stream", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert migrated.returncode == 0, migrated.stderr
    assert f"migrated {prefix}:model:segments" in migrated.stdout
    assert f"migrated {P0}: 2500 users" in migrated.stdout


def test_a_redis_without_the_listpack_settings_is_named(tmp_path: Path) -> None:
    assert listpack_advice(store_client("redis")) is None  # services.sh sets them
    plain = PrivateRedis(tmp_path)  # Redis's defaults: 512 entries (enough), 64 bytes
    try:
        advice = listpack_advice(plain.client())
        assert advice is not None and advice.endswith("set hash-max-listpack-value 1024")
    finally:
        plain.stop()
