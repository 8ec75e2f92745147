"""Erasure requests: a command on the input topic, applied in order with the user's events.

``segstream erase`` (and the API's ``DELETE /v1/users/{id}``) publish a request keyed by the
user id on every partition (producers' partitioners differ, so only the partitions' owners know
where the user lives). Each owner applies it between the events before and after it: where it
holds the user, the user's record, due entry, pending labels and recent ids go, its segment's
size goes down, a ``user_erased`` event and a membership tombstone go out; every owner appends
an audit entry of who asked, when and how, without the user's id or data. Events that come
later start a new user.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import orjson

from operators.events import Event

ERASE: Final = "erase"  # the request's ``type``: not an event type, nothing is counted for it
VIAS: Final = ("cli", "api")


@dataclass(slots=True)
class EraseRequest(Event):
    """An erasure request: ``event_id`` is the request's id, ``ts_ms`` when it was made (wall
    clock, for the audit only: it neither moves the watermark nor is ever late)."""

    requested_by: str = ""
    via: str = ""


def encode_erase_request(
    user_id: str, requested_by: str, via: str, now_ms: int, erase_id: str
) -> tuple[bytes, bytes]:
    """(key, value) of request ``erase_id`` to publish on the input topic."""
    value = orjson.dumps(
        {
            "type": ERASE,
            "event_id": erase_id,
            "user_id": user_id,
            "ts": now_ms,
            "requested_by": requested_by,
            "via": via,
        }
    )
    return user_id.encode(), value


def audit_entry(
    erase_id: str, request: tuple[tuple[str, str | int | bool], ...], applied_ms: int
) -> bytes:
    """What the audit log keeps of an applied erasure: the request (who, how, when, whether a
    record existed), not the user."""
    return orjson.dumps({"erase_id": erase_id, **dict(request), "applied_at_ms": applied_ms})
