"""Everything a run leaves in Redis, read back as plain values to compare two runs by."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from operators.features import UserState
from operators.pending import PendingLabel, unpack_pending
from operators.record import unpack_state
from tests.support.servers import read_topic


@dataclass
class PartitionState:
    offset: int | None
    watermark: int | None
    users: dict[str, UserState]
    due: dict[str, float]  # the due index: user -> next re-scoring time
    labels: dict[str, list[PendingLabel]]  # open labels of sampled users
    segment_sizes: dict[int, int]


def stored_state(
    client: redis.Redis, prefix: str, topic: str, partitions: int = 4
) -> dict[int, PartitionState]:
    found = {}
    for index in range(partitions):
        base = f"{prefix}:{{{topic}-{index}}}"
        users = {}
        for key in client.scan_iter(f"{base}:u:*", count=1000):
            data = client.get(key)
            assert data is not None
            users[key.decode().split(":u:", 1)[1]] = unpack_state(data)
        offset, watermark = client.get(f"{base}:offset"), client.get(f"{base}:watermark")
        found[index] = PartitionState(
            offset=None if offset is None else int(offset),
            watermark=None if watermark is None else int(watermark),
            users=users,
            due={u.decode(): s for u, s in client.zrange(f"{base}:due", 0, -1, withscores=True)},
            labels={
                u.decode(): unpack_pending(v) for u, v in client.hgetall(f"{base}:labels").items()
            },
            segment_sizes={
                int(s): int(n) for s, n in client.hgetall(f"{base}:segments").items() if int(n)
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
