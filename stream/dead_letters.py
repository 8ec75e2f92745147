"""Dead-letter records: what was wrong, where it came from, and the original bytes."""

from __future__ import annotations

import base64
import json

from operators.events import Rejected
from stream.ports import Record


def encode_dead_letter(record: Record, rejected: Rejected, rejected_at_ms: int) -> bytes:
    """JSON with the reason, the source position and the untouched message (base64)."""
    return json.dumps(
        {
            "reason": rejected.reason,
            "detail": rejected.detail,
            "topic": record.partition.topic,
            "partition": record.partition.index,
            "offset": record.offset,
            "timestamp_ms": record.timestamp_ms,
            "rejected_at_ms": rejected_at_ms,
            "key_base64": None if record.key is None else base64.b64encode(record.key).decode(),
            "value_base64": base64.b64encode(record.value).decode(),
        },
        separators=(",", ":"),
    ).encode()
