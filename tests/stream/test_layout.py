"""Redis keys of the layout before Redis Cluster support: found, refused, migrated."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from operators.segments import SegmentSnapshot
from stream.redis.client import Client
from stream.redis.layout import LayoutError, check_layout, legacy_keys, migrate
from stream.redis.model_store import RedisModelStore
from tests.support.servers import REDIS_URL, store_client, unique

SNAPSHOT = SegmentSnapshot(
    version=5,
    features=("frequency",),
    means=(1.0,),
    stds=(2.0,),
    centers=((0.5,), (-0.5,)),
    segment_ids=(4, 7),
    shares=(0.6, 0.4),
)

pytestmark = pytest.mark.redis


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
    yield client, prefix
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def test_the_earlier_layout_is_refused_then_migrated(earlier: tuple[Client, str]) -> None:
    client, prefix = earlier
    assert len(legacy_keys(client, prefix)) == 4
    with pytest.raises(LayoutError, match="segstream migrate"):
        check_layout(client, prefix)
    assert sorted(migrate(client, prefix)) == sorted(
        f"{prefix}:{k}"
        for k in ("model:segments", "segment-names", "segment-lineage", "model:trainer")
    )
    check_layout(client, prefix)  # no longer refused
    store = RedisModelStore(client, prefix)
    assert store.load() == (SNAPSHOT, b"trainer-state")
    assert store.load_segment_names() == {4: "bargain hunters"}
    assert store.load_lineage() == {4: {"created_version": 1}}
    assert store.hold_trainer_lease("new-trainer", 1000)  # the old lease was dropped
    assert migrate(client, prefix) == []  # a second run finds nothing to do


def test_migrate_will_not_overwrite_the_new_layout(earlier: tuple[Client, str]) -> None:
    client, prefix = earlier
    RedisModelStore(client, prefix).save(SNAPSHOT, None)  # a newer service ran here since
    with pytest.raises(LayoutError, match="both"):
        migrate(client, prefix)
    assert client.exists(f"{prefix}:model:segments")  # nothing lost


def test_serve_and_the_api_exit_78_until_migrate_runs(earlier: tuple[Client, str]) -> None:
    _, prefix = earlier
    env = {**os.environ, "SEGSTREAM_REDIS_URL": REDIS_URL, "SEGSTREAM_KEY_PREFIX": prefix}
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
