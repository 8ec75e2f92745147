"""User records as columns: a batch's stored records read as one numpy structured array.

The array's dtype is the stored record byte for byte (``operators.state_layout``, version 4,
187 bytes), so ``np.frombuffer`` reads a batch of records without a Python object per
field, and ``tobytes`` writes them back. Older versions are converted one by one on read.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from operators.events import EVENT_TYPES
from operators.features import RECENT_IDS, TAG_SLOTS, WINDOW_COUNT
from operators.state_layout import STATE_SIZE_BYTES, pack_state, unpack_state

FORMAT_VERSION: Final = 4
RECORD: Final = np.dtype(
    [
        ("version", "u1"),
        ("first_seen", "<i8"),
        ("last_seen", "<i8"),
        ("last_purchase", "<i8"),
        ("next_due", "<i8"),
        ("counts", "<u4", (len(EVENT_TYPES),)),
        ("spend_cents", "<i8"),
        ("windows", "<f4", (WINDOW_COUNT,)),
        ("recent", "u1", (6 * RECENT_IDS,)),
        ("category_bits", "<u4"),
        ("segment", "<i4"),
        ("pending_segment", "<i4"),
        ("pending_streak", "u1"),
        ("tags", "u1"),
        ("seq", "<u4"),
        ("tags_entered", "<u4", (TAG_SLOTS,)),  # epoch s; 0: not held, or not known
    ]
)
assert RECORD.itemsize == STATE_SIZE_BYTES  # the dtype is the packed layout, byte for byte

Records = npt.NDArray[np.void]


def read_records(packed: Sequence[bytes]) -> Records:
    """The records as one structured array, in order (a copy: the caller may write to it)."""
    current = bytes([FORMAT_VERSION])
    if all(len(p) == STATE_SIZE_BYTES and p[:1] == current for p in packed):
        return np.frombuffer(b"".join(packed), dtype=RECORD).copy()
    upgraded = [
        p if len(p) == STATE_SIZE_BYTES and p[:1] == current else pack_state(unpack_state(p))
        for p in packed
    ]
    return np.frombuffer(b"".join(upgraded), dtype=RECORD).copy()


def new_records(count: int) -> Records:
    """Empty records (no event yet) of the current version; the caller fills them."""
    records = np.zeros(count, dtype=RECORD)
    records["version"] = FORMAT_VERSION
    records["segment"] = -1
    records["pending_segment"] = -1
    return records


def write_records(records: Records) -> list[bytes]:
    """Each record as stored."""
    data = records.tobytes()
    size = STATE_SIZE_BYTES
    return [data[i : i + size] for i in range(0, len(data), size)]


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
