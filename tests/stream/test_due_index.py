"""The in-memory twin's due index answers as the sorted set it stands for, at any mix of
writes and reads."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from stream.twins.state_store import DueIndex

USERS = st.sampled_from([f"u{i}" for i in range(12)])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), USERS, st.integers(1, 20)),
        st.tuples(st.just("pop"), USERS, st.just(0)),
        st.tuples(st.just("due"), st.integers(1, 6), st.integers(0, 25)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_due_index_reads_like_a_sorted_set(ops: list[tuple[str, object, int]]) -> None:
    index, reference = DueIndex(), dict[str, int]()
    for op, arg, value in ops:
        if op == "set":
            assert isinstance(arg, str)
            index.set(arg, value)
            reference[arg] = value
        elif op == "pop":
            assert isinstance(arg, str)
            index.pop(arg)
            reference.pop(arg, None)
        else:
            assert isinstance(arg, int)
            expected = sorted((at, u) for u, at in reference.items() if at <= value)[:arg]
            assert index.due(value, arg) == [u for _, u in expected]
    assert set(index) == set(reference) and len(index) == len(reference)


def test_stale_entries_are_compacted() -> None:
    index = DueIndex()
    for at in range(1, 5_000):
        index.set("u", at)
    assert index.due(10_000, 5) == ["u"]
    assert len(index._heap) <= 2 * len(index) + 1024
