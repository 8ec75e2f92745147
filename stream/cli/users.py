"""``segstream inspect USER_ID`` (the user's state in Redis as JSON, for operators and tests)
and ``segstream erase USER_ID`` (an erasure request on every input partition)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from operators.inspection import describe_user
from operators.record import unpack_state
from operators.segments import segment_names
from operators.tags import usable_models
from stream.connections import redis_client
from stream.errors import DependencyError
from stream.redis.client import Client
from stream.redis.model_store import RedisModelStore
from stream.redis.state_store import RedisStateStore
from stream.settings import Settings


def inspect_user(
    settings: Settings,
    user_id: str,
    client: Client | None = None,
) -> dict[str, Any] | None:
    """The user's document (``operators.inspection``), or None if no partition holds them.

    The user's key is asked in every partition with a saved offset, so no partitioner needs to
    be known.
    """
    client = client or redis_client(settings)
    store = RedisStateStore(client, settings.key_prefix)
    found = store.find_user(store.saved_partitions(settings.input_topic), user_id)
    if found is None:
        return None
    partition, packed, watermark = found
    models = RedisModelStore(client, settings.key_prefix)
    snapshot = models.load_snapshot()
    doc = describe_user(
        user_id,
        unpack_state(packed),
        watermark,
        snapshot,
        settings.tag_definitions,
        usable_models(models.load_tags(), settings.tag_definitions),
        # As the API and change events name them: the analysts' name, else the generated.
        segment_names(snapshot, models.load_segment_names()),
    )
    return {"partition": partition.index, **doc}


def inspect_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        doc = inspect_user(settings, args.user_id)
    except DependencyError as exc:
        print(f"segstream: {exc}", file=sys.stderr)
        return 69
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
