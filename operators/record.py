"""The stored user record: one field list, one version, one byte layout, independent of Python
and River versions (a Redis string per user).

``FIELDS`` is the layout: little-endian, no padding, 187 bytes, the most Redis's 192-byte
allocation class holds (188). Its numpy dtype (``RECORD``) reads a batch of records with one
``np.frombuffer`` and writes them with one ``tobytes``; ``pack_state`` and ``unpack_state``
convert one record to and from a ``UserState`` through the same dtype. Older versions are read
(through their own field lists, below) and written as the current one when anything but the
next due time changes (that one every version keeps in the same place).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from operators.events import EVENT_TYPES
from operators.features import NO_SEGMENT, RECENT_IDS, TAG_SLOTS, WINDOW_COUNT, UserState

FORMAT_VERSION: Final = 4
_N: Final = len(EVENT_TYPES)
_HEAD: Final = [  # every version starts so
    ("version", "u1"),
    ("first_seen", "<i8"),
    ("last_seen", "<i8"),
    ("last_purchase", "<i8"),
    ("next_due", "<i8"),
    ("counts", "<u4", (_N,)),
    ("spend_cents", "<i8"),
    ("windows", "<f4", (WINDOW_COUNT,)),  # the window sums as of last_seen
]
FIELDS: Final = [
    *_HEAD,
    ("recent", "u1", (6 * RECENT_IDS,)),  # the last event ids' digests, 48 bits each
    ("category_bits", "<u4"),
    ("segment", "<i4"),
    ("pending_segment", "<i4"),
    ("pending_streak", "u1"),
    ("tags", "u1"),
    ("seq", "<u4"),
    ("tags_entered", "<u4", (TAG_SLOTS,)),  # epoch s; 0: not held, or not known
]
RECORD: Final = np.dtype(FIELDS)
STATE_SIZE_BYTES: Final = RECORD.itemsize
# Version 3: version 4 without the tags' entry times.
_V3: Final = np.dtype(FIELDS[:-1])
# Version 2 (before 0.2): two 64-bit recent ids and one-byte segment ids.
_V2: Final = np.dtype(
    [
        *_HEAD,
        ("recent", "<u8", (2,)),
        ("category_bits", "<u4"),
        ("segment", "i1"),
        ("pending_segment", "i1"),
        ("pending_streak", "u1"),
        ("tags", "u1"),
        ("seq", "<u4"),
    ]
)
assert STATE_SIZE_BYTES == 187
# Where every version keeps the next due time (8 bytes, little-endian): a re-scoring that moved
# nothing changes only these bytes, and the store sets them in place (``with_next_due``).
NEXT_DUE_AT: Final = 25
assert all(v.fields and v.fields["next_due"][1] == NEXT_DUE_AT for v in (RECORD, _V3, _V2))
# Fields saturate at their type's limit instead of overflowing.
_U32: Final = 2**32 - 1
_I64: Final = 2**63 - 1
_I32: Final = 2**31 - 1
_DIGEST_MASK: Final = 2**48 - 1

Records = npt.NDArray[np.void]


def read_records(packed: Sequence[bytes]) -> Records:
    """The records as one structured array, in order (a copy: the caller may write to it)."""
    current = bytes([FORMAT_VERSION])
    if all(len(p) == STATE_SIZE_BYTES and p[:1] == current for p in packed):
        return np.frombuffer(b"".join(packed), dtype=RECORD).copy()
    return np.concatenate([_upgraded(p) for p in packed]) if packed else new_records(0)


def _upgraded(data: bytes) -> Records:
    """One record of any version, as the current version."""
    if data[:1] == bytes([FORMAT_VERSION]) and len(data) == STATE_SIZE_BYTES:
        return np.frombuffer(data, dtype=RECORD).copy()
    if data[:1] == b"\x03" and len(data) == _V3.itemsize:
        old = np.frombuffer(data, dtype=_V3)
        out = new_records(1)
        for name in _V3.names or ():
            out[name] = old[name]
        out["version"] = FORMAT_VERSION
        return out
    if data[:1] == b"\x02" and len(data) == _V2.itemsize:
        old = np.frombuffer(data, dtype=_V2)
        out = new_records(1)
        for name in _V2.names or ():
            if name != "recent":
                out[name] = old[name]
        digests = np.zeros(RECENT_IDS, dtype="<u8")
        digests[:2] = old["recent"][0] & np.uint64(_DIGEST_MASK)
        set_recent_ids(out, digests[None, :])
        out["version"] = FORMAT_VERSION
        return out
    raise ValueError(f"unknown user-state format version {data[:1]!r} ({len(data)} bytes)")


def new_records(count: int) -> Records:
    """Empty records (no event yet) of the current version; the caller fills them."""
    records = np.zeros(count, dtype=RECORD)
    records["version"] = FORMAT_VERSION
    records["segment"] = NO_SEGMENT
    records["pending_segment"] = NO_SEGMENT
    return records


def write_records(records: Records) -> list[bytes]:
    """Each record as stored."""
    data = records.tobytes()
    size = STATE_SIZE_BYTES
    return [data[i : i + size] for i in range(0, len(data), size)]


def with_next_due(record: bytes, due_ms: int) -> bytes:
    """A stored record (of any version) with another next due time."""
    head = record[:NEXT_DUE_AT].ljust(NEXT_DUE_AT, b"\0")  # as Redis's SETRANGE pads
    return head + due_ms.to_bytes(8, "little", signed=True) + record[NEXT_DUE_AT + 8 :]


def recent_ids(records: Records) -> npt.NDArray[np.uint64]:
    """The remembered event-id digests (48-bit) of each record, ``(n, RECENT_IDS)``."""
    wide = np.zeros((len(records), RECENT_IDS, 8), dtype=np.uint8)
    wide[:, :, :6] = records["recent"].reshape(len(records), RECENT_IDS, 6)
    return wide.view("<u8").reshape(len(records), RECENT_IDS)


def set_recent_ids(records: Records, digests: npt.NDArray[np.uint64]) -> None:
    wide = np.ascontiguousarray(digests, dtype="<u8").view(np.uint8)
    records["recent"] = wide.reshape(len(records), RECENT_IDS, 8)[:, :, :6].reshape(
        len(records), 6 * RECENT_IDS
    )


def pack_state(state: UserState) -> bytes:
    """The record as stored. Never fails for a state the operators made: counters saturate at
    their field's limit (4,294,967,295 events of a type, 2**63 - 1 cents), far beyond any user.
    """
    record = new_records(1)
    record["first_seen"] = state.first_seen_ms
    record["last_seen"] = state.last_seen_ms
    record["last_purchase"] = state.last_purchase_ms
    record["next_due"] = state.next_due_ms
    record["counts"] = [min(c, _U32) for c in state.counts]
    record["spend_cents"] = min(state.spend_cents, _I64)
    record["windows"] = state.windows
    digests = [d & _DIGEST_MASK for d in state.recent_event_ids]
    set_recent_ids(record, np.asarray([digests], dtype="<u8"))
    record["category_bits"] = state.category_bits
    record["segment"] = _segment(state.segment)
    record["pending_segment"] = _segment(state.pending_segment)
    record["pending_streak"] = min(state.pending_streak, 255)
    record["tags"] = state.tags
    record["seq"] = min(state.seq, _U32)
    record["tags_entered"] = [min(max(t, 0), _U32) for t in state.tags_entered_s]
    return record.tobytes()


def _segment(segment: int) -> int:
    return segment if -1 <= segment <= _I32 else NO_SEGMENT


def unpack_state(data: bytes) -> UserState:
    """The stored record (of any version) as a ``UserState``."""
    r = _upgraded(data)[0]
    return UserState(
        first_seen_ms=int(r["first_seen"]),
        last_seen_ms=int(r["last_seen"]),
        last_purchase_ms=int(r["last_purchase"]),
        next_due_ms=int(r["next_due"]),
        counts=tuple(r["counts"].tolist()),
        spend_cents=int(r["spend_cents"]),
        windows=tuple(r["windows"].tolist()),
        recent_event_ids=tuple(recent_ids(r[None])[0].tolist()),
        category_bits=int(r["category_bits"]),
        segment=int(r["segment"]),
        pending_segment=int(r["pending_segment"]),
        pending_streak=int(r["pending_streak"]),
        tags=int(r["tags"]),
        seq=int(r["seq"]),
        tags_entered_s=tuple(r["tags_entered"].tolist()),
    )
