"""One behaviour suite for every ModelStore: in-memory and Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from operators.segments import SegmentSnapshot
from operators.tags import TagModel
from stream.ports import ModelStore
from stream.redis.model_store import RedisModelStore
from stream.twins.model_store import InMemoryModelStore
from tests.support.servers import store_client, unique

SNAPSHOT = SegmentSnapshot(
    version=3,
    features=("frequency",),
    means=(1.0,),
    stds=(2.0,),
    centers=((0.5,), (-0.5,)),
    segment_ids=(4, 7),
    shares=(0.6, 0.4),
)
TAG = TagModel("soon", 2, ("frequency",), (0.1,), (1.0,), (0.7,), -0.2, True, {"auc": 0.8})


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.redis),
    ]
)
def store(request: pytest.FixtureRequest) -> Iterator[ModelStore]:
    if request.param == "memory":
        yield InMemoryModelStore()
        return
    client = store_client(request.param)
    prefix = unique("models")
    yield RedisModelStore(client, prefix)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def test_models_and_trainer_state_are_read_back(store: ModelStore) -> None:
    assert store.load() == (None, None) and store.load_snapshot() is None
    assert store.load_tags() == {} and store.load_tag_trainers() is None
    store.save(SNAPSHOT, b"trainer-state")
    store.save_tags({"soon": TAG}, b"learners")
    assert store.load() == (SNAPSHOT, b"trainer-state")
    assert store.load_snapshot() == SNAPSHOT
    assert store.load_tags() == {"soon": TAG} and store.load_tag_trainers() == b"learners"
    store.save_tags({"soon": TAG})  # models alone leave the trainer state as it was
    assert store.load_tag_trainers() == b"learners"


def test_one_holder_of_the_trainer_lease_at_a_time(store: ModelStore) -> None:
    assert store.hold_trainer_lease("a", 300)
    assert not store.hold_trainer_lease("b", 300)
    assert store.hold_trainer_lease("a", 300)  # renewed by its holder
    time.sleep(0.4)  # not renewed: it expires
    assert store.hold_trainer_lease("b", 300)
    assert not store.hold_trainer_lease("a", 300)


@pytest.mark.redis
def test_the_model_keys_share_one_cluster_slot() -> None:
    client = store_client("cluster")
    prefix = unique("models")
    store = RedisModelStore(client, prefix)
    store.save(SNAPSHOT, b"trainer-state")
    store.save_lineage({4: {"created_version": 1}})
    client.hset(store.names_key, "4", "bargain hunters")
    assert store.hold_trainer_lease("a", 60_000)
    keys = [k.decode() for k in client.scan_iter(f"{prefix}:*")]
    assert len(keys) == 4 and len({client.keyslot(k) for k in keys}) == 1
    for key in keys:
        client.delete(key)
