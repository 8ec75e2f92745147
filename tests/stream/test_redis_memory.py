"""What a user costs in Redis: buckets of users and records without their zero words keep the
records, the due index and the keys' overheads under 200 bytes a user (``MEMORY USAGE`` over
every key the store wrote), where a key per user cost 280 for the record key alone and the
record is 187 bytes. bench/scale.py measures everything, labels too, with ``INFO memory`` at up
to millions of users (docs/sizing.md)."""

from __future__ import annotations

import random
import uuid

import pytest

from operators.features import UserState
from operators.record import STATE_SIZE_BYTES, pack_state
from stream.ports import Partition, PartitionWrite
from stream.redis.state_store import RedisStateStore
from tests.support.servers import store_client

USERS = 30_000
PER_BUCKET = 15  # SEGSTREAM_REDIS_BUCKETS' default at a million users on four partitions


def records(users: int) -> dict[str, bytes]:
    rng = random.Random(3)
    return {
        f"user-{n:06d}": pack_state(
            UserState(
                1_767_225_600_000 + n,
                1_767_225_600_000 + 3_600_000 * n,
                0,
                (n % 40, n % 3, n % 5, 0, n % 2, 0),
                n * 13,
                tuple(rng.random() * 50 for _ in range(12)),
                tuple(rng.getrandbits(48) for _ in range(4)),
                next_due_ms=1_780_000_000_000 + 60_000 * n,
                segment=n % 4,
                seq=n % 90,
            )
        )
        for n in range(users)
    }


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["redis", "cluster"])
def test_a_user_costs_under_200_bytes_in_buckets(kind: str) -> None:
    client = store_client(kind)
    prefix = f"seg{uuid.uuid4().hex[:6]}"  # as long as the default prefix, "segstream"
    store = RedisStateStore(client, prefix, buckets=USERS // PER_BUCKET)
    partition = Partition("user-events", 3)
    store.claim(partition)
    users = list(records(USERS).items())
    try:
        for at in range(0, USERS, 2000):
            chunk = dict(users[at : at + 2000])
            write = PartitionWrite(at, at + 1, chunk, 0, dict.fromkeys(chunk, 1))
            store.save({partition: write})
        keys = list(client.scan_iter(f"{prefix}:*", count=10_000))
        assert all(client.object("encoding", k) != b"hashtable" for k in keys[:100])
        per_user = sum(client.memory_usage(k, samples=0) or 0 for k in keys) / USERS
        assert STATE_SIZE_BYTES / 2 < per_user <= 200, per_user
    finally:
        for key in client.scan_iter(f"{prefix}:*", count=10_000):
            client.delete(key)
