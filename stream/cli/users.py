"""``segstream inspect USER_ID`` (the user's state in Redis as JSON, for operators and tests)
and ``segstream erase USER_ID`` (an erasure request on every input partition)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import redis

from operators.inspection import describe_user
from operators.record import unpack_state
from operators.segments import segment_names
from operators.tags import usable_models
from stream.connections import redis_client
from stream.ports import Partition
from stream.redis.model_store import RedisModelStore
from stream.redis.state_store import RedisStateStore
from stream.settings import Settings

MAX_PARTITIONS = 10_000


def inspect_user(
    settings: Settings,
    user_id: str,
    client: redis.Redis | None = None,
) -> dict[str, Any] | None:
    """The user's document (``operators.inspection``), or None if no partition holds them.

    Every partition's key is asked in one round trip, so no partitioner needs to be known.
    """
    client = client or redis_client(settings)
    store = RedisStateStore(client, settings.key_prefix)
    partitions = [Partition(settings.input_topic, i) for i in range(MAX_PARTITIONS)]
    found: list[bytes | None] = client.mget(  # type: ignore[assignment]
        [store.user_key(p, user_id) for p in partitions]
    )
    for partition, packed in zip(partitions, found, strict=True):
        if packed is None:
            continue
        models = RedisModelStore(client, settings.key_prefix)
        snapshot = models.load_snapshot()
        doc = describe_user(
            user_id,
            unpack_state(packed),
            store.watermark(partition),
            snapshot,
            settings.tag_definitions,
            usable_models(models.load_tags(), settings.tag_definitions),
            # As the API and change events name them: the analysts' name, else the generated.
            segment_names(snapshot, models.load_segment_names()),
        )
        return {"partition": partition.index, **doc}
    return None


def inspect_command(args: argparse.Namespace, settings: Settings) -> int:
    doc = inspect_user(settings, args.user_id)
    if doc is None:
        print(f"segstream: no state for user {args.user_id!r}", file=sys.stderr)
        return 1
    print(json.dumps(doc, indent=2))
    return 0


def erase_command(args: argparse.Namespace, settings: Settings) -> int:
    from stream.feeds.erasure import request_erasure
    from stream.wiring import kafka_sink

    by = args.by or os.environ.get("USER") or "unknown"
    producer = kafka_sink(settings)
    try:
        erase_id = request_erasure(settings.input_topic, args.user_id, by, "cli", producer)
    finally:
        producer.close()
    print(f"{erase_id}: erasure of {args.user_id!r} published to {settings.input_topic}")
    return 0
