"""User records as Redis keeps them: the zero words left out.

A record (``operators.record``, 187 bytes) is mostly zeros for most users: tag entry times not
held, event types never seen, no purchase. Redis keeps each as

    next due time (8 bytes, little-endian)   first, so the scripts read and set it in place
    length of the record (1 byte)
    bitmap of the non-zero words             a bit per 4-byte word of the rest, padded
    the non-zero words, in order

where "the rest" is the record without its next due time, padded with zeros to whole words:
about 115 bytes for the bench stream's users instead of 187. Lossless, for any record version
(each keeps its next due time at ``NEXT_DUE_AT``). Both directions convert a batch at once,
one numpy pass per record length (almost always one). A value too short to be a record is
kept whole after a zero due time and a zero length.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from operators.record import NEXT_DUE_AT

DUE_AT: Final = 0  # where a compact record keeps its next due time
_HEAD: Final = 9  # next due time and length
_SHORTEST: Final = NEXT_DUE_AT + 8  # a record holds its next due time
_Bytes = npt.NDArray[np.uint8]


def _layout(length: int) -> tuple[int, int]:
    """Words of the rest and bytes of the bitmap, for a record of ``length`` bytes."""
    words = -(-(length - 8) // 4)
    return words, -(-words // 8)


def _by_length(lengths: Sequence[int]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for index, length in enumerate(lengths):
        groups.setdefault(length, []).append(index)
    return groups


def _in_order(n: int, groups: dict[int, list[int]], done: dict[int, list[bytes]]) -> list[bytes]:
    if len(groups) == 1:
        return next(iter(done.values()))
    out: list[bytes] = [b""] * n
    for length, indices in groups.items():
        for index, item in zip(indices, done[length], strict=True):
            out[index] = item
    return out


def _compact_group(records: Sequence[bytes], length: int) -> list[bytes]:
    words, bitmap = _layout(length)
    raw = np.frombuffer(b"".join(records), dtype=np.uint8).reshape(len(records), length)
    rest = np.zeros((len(records), 4 * words), dtype=np.uint8)
    rest[:, :NEXT_DUE_AT] = raw[:, :NEXT_DUE_AT]
    rest[:, NEXT_DUE_AT : length - 8] = raw[:, NEXT_DUE_AT + 8 :]
    kept = rest.view("<u4") != 0
    head = np.empty((len(records), _HEAD + bitmap), dtype=np.uint8)
    head[:, :8] = raw[:, NEXT_DUE_AT : NEXT_DUE_AT + 8]
    head[:, 8] = length
    head[:, _HEAD:] = np.packbits(kept, axis=1, bitorder="little")
    table = np.concatenate([head, rest], axis=1)
    keep = np.concatenate([np.ones(head.shape, dtype=np.bool_), np.repeat(kept, 4, axis=1)], 1)
    blob = table[keep].tobytes()
    ends = np.cumsum(keep.sum(axis=1)).tolist()
    return [blob[start:end] for start, end in zip([0, *ends[:-1]], ends, strict=True)]


def compact_many(records: Sequence[bytes]) -> list[bytes]:
    """The compact forms of ``records``, in order."""
    groups = _by_length([len(r) if len(r) >= _SHORTEST else 0 for r in records])
    done = {
        n: _compact_group([records[i] for i in ix], n)
        if n
        else [bytes(_HEAD) + records[i] for i in ix]
        for n, ix in groups.items()
    }
    return _in_order(len(records), groups, done)


def _expand_group(values: Sequence[bytes], length: int) -> list[bytes]:
    words, bitmap = _layout(length)
    sizes = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
    buffer: _Bytes = np.frombuffer(b"".join(values), dtype=np.uint8)
    starts = np.cumsum(sizes) - sizes
    heads = buffer[starts[:, None] + np.arange(_HEAD + bitmap)]
    kept = np.unpackbits(heads[:, _HEAD:], axis=1, bitorder="little")[:, :words].astype(bool)
    data = (sizes - _HEAD - bitmap).astype(np.int64)  # the bytes of each one's words
    first = np.repeat(starts + _HEAD + bitmap - (np.cumsum(data) - data), data)
    rest = np.zeros((len(values), words), dtype="<u4")
    rest[kept] = buffer[first + np.arange(int(data.sum()))].view("<u4")
    flat = rest.view(np.uint8)
    out = np.empty((len(values), length), dtype=np.uint8)
    out[:, :NEXT_DUE_AT] = flat[:, :NEXT_DUE_AT]
    out[:, NEXT_DUE_AT : NEXT_DUE_AT + 8] = heads[:, :8]
    out[:, NEXT_DUE_AT + 8 :] = flat[:, NEXT_DUE_AT : length - 8]
    blob = out.tobytes()
    return [blob[at : at + length] for at in range(0, len(blob), length)]


def expand_many(values: Sequence[bytes]) -> list[bytes]:
    """The records compact forms hold, in order."""
    groups = _by_length([v[8] for v in values])
    done = {
        n: _expand_group([values[i] for i in ix], n) if n else [values[i][_HEAD:] for i in ix]
        for n, ix in groups.items()
    }
    return _in_order(len(values), groups, done)


def expand(value: bytes) -> bytes:
    """The record one compact form holds (the API's point read: no array to set up)."""
    length = value[8]
    if not length:
        return value[_HEAD:]
    words, bitmap = _layout(length)
    bits = int.from_bytes(value[_HEAD : _HEAD + bitmap], "little")
    rest = bytearray(4 * words)
    at = _HEAD + bitmap
    for word in range(words):
        if bits >> word & 1:
            rest[4 * word : 4 * word + 4] = value[at : at + 4]
            at += 4
    return bytes(rest[:NEXT_DUE_AT]) + value[:8] + bytes(rest[NEXT_DUE_AT : length - 8])
