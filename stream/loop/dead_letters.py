"""Dead-letter records: what was wrong, where it came from, and the original bytes.

A dead letter always fits its topic: when the original (base64, a third larger) would push it
past ``max_bytes``, the dead letter carries the original's size, SHA-256 and first KiB instead,
with the topic, partition and offset to re-read it from (``value_base64`` is then null).
"""

from __future__ import annotations

import base64
import hashlib
import json

from operators.events import Rejected
from stream.ports import Record

PREFIX_BYTES = 1024


def encode_dead_letter(
    record: Record,
    rejected: Rejected,
    rejected_at_ms: int,
    max_bytes: int = 1_000_000,
) -> bytes:
    """JSON with the reason, the source position and the untouched message (base64)."""
    doc: dict[str, object] = {
        "reason": rejected.reason,
        "detail": rejected.detail,
        "topic": record.partition.topic,
        "partition": record.partition.index,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
        "rejected_at_ms": rejected_at_ms,
        "key_base64": _b64(record.key),
        "value_base64": _b64(record.value),
    }
    encoded = _dumps(doc)
    if len(encoded) <= max_bytes:
        return encoded
    for field in ("key", "value"):  # too big to carry: describe it, say where it is
        original = getattr(record, field)
        if original is not None and len(original) > PREFIX_BYTES:
            doc[f"{field}_base64"] = None
            doc[f"{field}_bytes"] = len(original)
            doc[f"{field}_sha256"] = hashlib.sha256(original).hexdigest()
            doc[f"{field}_prefix_base64"] = _b64(original[:PREFIX_BYTES])
    return _dumps(doc)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _dumps(doc: dict[str, object]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()
