"""Records without their zero words (``stream.redis.compact``): lossless, due time first."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from operators.record import NEXT_DUE_AT, STATE_SIZE_BYTES
from stream.redis.compact import DUE_AT, compact_many, expand, expand_many

# Mostly zeros, as records are; any length, as record versions and odd values are.
sparse = st.lists(st.sampled_from([0] * 6 + [1, 7, 255]), max_size=260).map(bytes)
records = st.lists(
    st.one_of(sparse, st.binary(min_size=STATE_SIZE_BYTES, max_size=STATE_SIZE_BYTES)),
    max_size=40,
)


@given(records)
def test_a_batch_of_records_comes_back_whole(batch: list[bytes]) -> None:
    compact = compact_many(batch)
    assert expand_many(compact) == batch
    assert [expand(c) for c in compact] == batch
    for record, stored in zip(batch, compact, strict=True):
        if len(record) >= NEXT_DUE_AT + 8:  # what the scripts read and set in place
            assert stored[DUE_AT : DUE_AT + 8] == record[NEXT_DUE_AT : NEXT_DUE_AT + 8]
        else:
            assert stored[DUE_AT : DUE_AT + 8] == bytes(8)


def test_zero_words_cost_a_bit_each() -> None:
    record = bytearray(STATE_SIZE_BYTES)
    record[0] = 4
    record[NEXT_DUE_AT : NEXT_DUE_AT + 8] = (123).to_bytes(8, "little")
    record[100] = 9
    (stored,) = compact_many([bytes(record)])
    assert len(stored) == 9 + 6 + 2 * 4  # head, bitmap of 45 words, two non-zero words
    assert expand(stored) == bytes(record)
