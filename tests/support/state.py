"""Everything a run leaves in Redis, read back as plain values to compare two runs by."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from operators.features import UserState
from operators.pending import PendingLabel, unpack_pending
from operators.record import unpack_state
from stream.ports import Partition
from stream.redis.client import Client
from stream.redis.state_store import LABEL_SHARE, RedisStateStore, bucket_of
from tests.support.servers import read_topic


@dataclass
class PartitionState:
    offset: int | None
    watermark: int | None
    users: dict[str, UserState]
    due: dict[int, int]  # bucket -> its users' earliest next re-scoring (the index bounds it)
    labels: dict[str, list[PendingLabel]]  # open labels of sampled users
    segment_sizes: dict[int, int]


def partition_users(store: RedisStateStore, partition: Partition) -> dict[str, bytes]:
    """Every user record of the partition, through the store's scan."""
    users: dict[str, bytes] = {}
    cursor = 0
    while True:
        cursor, found = store.scan_users(partition, cursor, 5000)
        users.update(found)
        if cursor == 0:
            return users


def partition_labels(
    client: Client, store: RedisStateStore, partition: Partition
) -> dict[str, bytes]:
    """Every open label set of the partition: its label buckets' fields."""
    pipe = client.pipeline(transaction=False)
    for bucket in range(-(-store.buckets(partition) // LABEL_SHARE)):
        pipe.hgetall(store.key(partition, f"l:{bucket}"))
    return {u.decode(): v for reply in pipe.execute() for u, v in reply.items()}


def stored_state(
    client: Client, prefix: str, topic: str, partitions: int = 4
) -> dict[int, PartitionState]:
    store = RedisStateStore(client, prefix)
    found = {}
    for index in range(partitions):
        partition = Partition(topic, index)
        offset = client.get(store.key(partition, "offset"))
        watermark = client.get(store.key(partition, "watermark"))
        users = {u: unpack_state(r) for u, r in partition_users(store, partition).items()}
        earliest: dict[int, int] = {}
        for user, state in users.items():
            if state.next_due_ms:
                bucket = bucket_of(user, store.buckets(partition))
                earliest[bucket] = min(earliest.get(bucket, state.next_due_ms), state.next_due_ms)
        bounds = client.zrange(store.key(partition, "due"), 0, -1, withscores=True)
        index_of = {int(b): s for b, s in bounds}
        # The due index's invariant: each bucket's bound is at or before its earliest due user.
        late = {b: due for b, due in earliest.items() if index_of.get(b, float("inf")) > due}
        assert not late, f"{partition}: due index bounds past their users: {late}"
        found[index] = PartitionState(
            offset=None if offset is None else int(offset),
            watermark=None if watermark is None else int(watermark),
            users=users,
            due=earliest,
            labels={
                u: unpack_pending(v) for u, v in partition_labels(client, store, partition).items()
            },
            segment_sizes={
                int(s): int(n)
                for s, n in client.hgetall(store.key(partition, "segments")).items()
                if int(n)
            },
        )
    return found


def differences(
    expected: dict[int, PartitionState],
    got: dict[int, PartitionState],
) -> list[str]:
    """What differs, per partition and user (empty when the runs agree exactly)."""
    out = []
    for index, want in expected.items():
        have = got.get(index)
        if have is None:
            out.append(f"partition {index} missing")
            continue
        for name in ("offset", "watermark", "due", "labels", "segment_sizes"):
            if getattr(want, name) != getattr(have, name):
                out.append(f"partition {index}: {name} differs")
        for user in want.users.keys() | have.users.keys():
            if want.users.get(user) != have.users.get(user):
                out.append(
                    f"partition {index}: user {user}: {want.users.get(user)} != "
                    f"{have.users.get(user)}"
                )
    return out


def change_ids(topic: str) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """The topic's change ids in order, and its user changes by user in order."""
    ids, by_user = [], {}
    for _, value in read_topic(topic):
        doc = json.loads(value)
        if "change_id" in doc:
            ids.append(doc["change_id"])
        if "user_id" in doc and "seq" in doc:
            by_user.setdefault(doc["user_id"], []).append(doc)
    return ids, by_user
