"""The stored user record: a fixed-size, versioned byte layout, independent of Python and
River versions (a Redis string per user)."""

from __future__ import annotations

import struct
from typing import Final

from operators.events import EVENT_TYPES
from operators.features import NO_SEGMENT, RECENT_IDS, TAG_SLOTS, WINDOW_COUNT, UserState

_N: Final = len(EVENT_TYPES)
_FORMAT_VERSION: Final = 4
# version, first seen, last seen, last purchase, next re-scoring, counts, spend cents, window
# sums (float32), recent event-id digests (48-bit), category bits, segment, pending segment,
# pending streak, tag bits, change seq, each tag's entry time (epoch s). Little-endian, no
# padding: 187 bytes, the most Redis's 192-byte allocation class holds (188).
_V3_FIELDS: Final = f"<B q q q q {_N}I q {WINDOW_COUNT}f {6 * RECENT_IDS}s I i i B B I"
_LAYOUT: Final = struct.Struct(f"{_V3_FIELDS} {TAG_SLOTS}I")
# Version 3: version 4 without the tags' entry times; read, written as 4.
_LAYOUT_V3: Final = struct.Struct(_V3_FIELDS)
# Version 2 (before 0.2): two 64-bit recent ids and one-byte segment ids; read, written as 3.
_LAYOUT_V2: Final = struct.Struct(f"<B q q q q {_N}I q {WINDOW_COUNT}f 2Q I b b B B I")
# Packed fields saturate at their type's limit instead of failing to pack.
_U32: Final = 2**32 - 1
_I64: Final = 2**63 - 1
_I32: Final = 2**31 - 1
_DIGEST_MASK: Final = 2**48 - 1
_FLOAT32S: Final = struct.Struct(f"<{WINDOW_COUNT}f")


def pack_state(state: UserState) -> bytes:
    """The record as stored: fixed size, versioned, independent of Python and River versions.

    Never fails for a state the operators made: counters saturate at their field's limit
    (4,294,967,295 events of a type, 2**63 - 1 cents), far beyond any real user.
    """
    return _LAYOUT.pack(
        _FORMAT_VERSION,
        state.first_seen_ms,
        state.last_seen_ms,
        state.last_purchase_ms,
        state.next_due_ms,
        *(min(c, _U32) for c in state.counts),
        min(state.spend_cents, _I64),
        *state.windows,
        b"".join((d & _DIGEST_MASK).to_bytes(6, "little") for d in state.recent_event_ids),
        state.category_bits,
        _segment(state.segment),
        _segment(state.pending_segment),
        min(state.pending_streak, 255),
        state.tags,
        min(state.seq, _U32),
        *(min(max(t, 0), _U32) for t in state.tags_entered_s),
    )


def _segment(segment: int) -> int:
    return segment if -1 <= segment <= _I32 else NO_SEGMENT


_CURRENT_OR_V3: Final = {(bytes([_FORMAT_VERSION]), _LAYOUT.size), (b"\x03", _LAYOUT_V3.size)}


def unpack_state(data: bytes) -> UserState:
    ids_at = 6 + _N + WINDOW_COUNT
    if data[:1] == b"\x02" and len(data) == _LAYOUT_V2.size:
        fields = list(_LAYOUT_V2.unpack(data))
        recent = [d & _DIGEST_MASK for d in fields[ids_at : ids_at + 2]]
        fields[ids_at : ids_at + 2] = [(*recent, *(0,) * (RECENT_IDS - 2))]
    elif (data[:1], len(data)) in _CURRENT_OR_V3:
        fields = list((_LAYOUT if len(data) == _LAYOUT.size else _LAYOUT_V3).unpack(data))
        packed = fields[ids_at]
        fields[ids_at] = tuple(
            int.from_bytes(packed[i : i + 6], "little") for i in range(0, 6 * RECENT_IDS, 6)
        )
    else:
        raise ValueError(f"unknown user-state format version {data[:1]!r} ({len(data)} bytes)")
    counts_at = 5
    windows_at = counts_at + _N + 1
    rest = ids_at + 1
    return UserState(
        first_seen_ms=fields[1],
        last_seen_ms=fields[2],
        last_purchase_ms=fields[3],
        next_due_ms=fields[4],
        counts=tuple(fields[counts_at : counts_at + _N]),
        spend_cents=fields[counts_at + _N],
        windows=tuple(fields[windows_at:ids_at]),
        recent_event_ids=fields[ids_at],
        category_bits=fields[rest],
        segment=fields[rest + 1],
        pending_segment=fields[rest + 2],
        pending_streak=fields[rest + 3],
        tags=fields[rest + 4],
        seq=fields[rest + 5],
        tags_entered_s=tuple(fields[rest + 6 :]) or (0,) * TAG_SLOTS,
    )


STATE_SIZE_BYTES: Final = _LAYOUT.size
