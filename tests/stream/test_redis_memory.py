"""The per-user record fits its budget in Redis, as ``MEMORY USAGE`` measures it: 280 bytes (a
187-byte value in jemalloc's 192-byte class; it was 248 before the tags' entry times)."""

from __future__ import annotations

import uuid

import pytest

from operators.events import Event
from operators.features import update_features
from operators.record import pack_state
from stream.ports import Partition, PartitionWrite
from stream.redis.state_store import RedisStateStore
from tests.support.servers import redis_client

T0 = 1_767_225_600_000


@pytest.mark.redis
@pytest.mark.parametrize("user_id", ["17850", "user-000123", "c0ffee00-1234abc"])
def test_a_user_record_costs_at_most_280_bytes_in_redis(user_id: str) -> None:
    client = redis_client()
    prefix = f"seg{uuid.uuid4().hex[:6]}"  # as long as the default prefix, "segstream"
    store = RedisStateStore(client, prefix, ttl_s=86_400)
    partition = Partition("user-events", 3)
    state = None
    for n in range(50):
        kind = ("view", "add_to_cart", "purchase", "cancel")[n % 4]
        state = update_features(
            state,
            Event(
                f"e{n}",
                user_id,
                kind,
                T0 + n * 3_600_000,
                12.5 if kind == "purchase" else None,
                category=f"cat-{n % 7}",
            ),
        )
    assert state is not None
    store.claim(partition)
    key = store.user_key(partition, user_id)
    try:
        store.save({partition: PartitionWrite(0, 1, {user_id: pack_state(state)})})
        usage = client.memory_usage(key, samples=0)
        assert usage is not None and usage <= 280, usage
    finally:
        client.delete(*client.keys(f"{prefix}:*"))
