"""One behaviour suite for every StateStore: in-memory and Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from operators.features import UserState
from operators.record import pack_state, unpack_state, with_next_due
from stream.errors import PartitionLost, StateLost
from stream.ports import Partition, PartitionWrite, StateStore
from stream.redis import state_store
from stream.redis.compact import expand
from stream.redis.state_store import CHUNK_USERS, RedisStateStore, bucket_of
from stream.twins.state_store import InMemoryStateStore
from tests.support.servers import store_client, unique

P0, P1 = Partition("events", 0), Partition("events", 1)


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.redis),
    ]
)
def new_store(request: pytest.FixtureRequest) -> Iterator[Callable[[], StateStore]]:
    """A factory of clients of one fresh store (several clients = several consumers)."""
    if request.param == "memory":
        shared = InMemoryStateStore()
        yield shared.handle
        return
    client = store_client(request.param)
    prefix = unique("contract")
    yield lambda: RedisStateStore(client, prefix, buckets=64)  # a few users share a bucket
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)


def test_a_new_partition_has_no_offset_and_no_users(new_store: Callable[[], StateStore]) -> None:
    store = new_store()
    assert store.claim(P0) is None
    assert store.load({P0: ["a", "b"]}) == {P0: {}}


def test_saved_users_and_offsets_are_read_back(new_store: Callable[[], StateStore]) -> None:
    store = new_store()
    store.claim(P0)
    store.claim(P1)
    store.save(
        {
            P0: PartitionWrite(0, 10, {"a": b"\x01", "b": b"\x02"}),
            P1: PartitionWrite(0, 3, {"c": b"\x03"}),
        }
    )
    assert store.load({P0: ["a", "b", "zz"], P1: ["c"]}) == {
        P0: {"a": b"\x01", "b": b"\x02"},
        P1: {"c": b"\x03"},
    }
    assert store.next_offset(P0) == 10 and store.next_offset(P1) == 3
    assert new_store().claim(P0) == 10  # a restarted consumer resumes here


def test_a_due_time_alone_is_set_in_place(new_store: Callable[[], StateStore]) -> None:
    """A user re-scored with nothing else moving: its record keeps every byte but its next
    due time; a due time for a user with no stored record creates none."""
    store = new_store()
    store.claim(P0)
    state = UserState(
        1, 2, 0, (1, 0, 0, 0, 0, 0), 0, (0.5,) * 12, (4, 5, 0, 0), next_due_ms=3, seq=7
    )
    record = pack_state(state)
    store.save({P0: PartitionWrite(0, 1, {"a": record}, dues={"a": 3})})
    store.save({P0: PartitionWrite(1, 2, {}, dues={"a": 86_400_003, "ghost": 5, "b": 0})})
    stored = store.load({P0: ["a", "ghost"]})[P0]
    assert set(stored) == {"a"}
    assert unpack_state(stored["a"]) == replace(unpack_state(record), next_due_ms=86_400_003)
    assert stored["a"] == with_next_due(record, 86_400_003)
    assert "a" in store.due_users(P0, 86_400_003, 10)


def test_a_consumer_that_lost_the_partition_cannot_write(
    new_store: Callable[[], StateStore],
) -> None:
    old, new = new_store(), new_store()
    old.claim(P0)
    old.claim(P1)
    old.save({P0: PartitionWrite(0, 5, {"a": b"old"})})
    assert new.claim(P0) == 5
    with pytest.raises(PartitionLost) as lost:
        old.save({P0: PartitionWrite(5, 9, {"a": b"zombie"}), P1: PartitionWrite(0, 2, {})})
    assert lost.value.partitions == {P0}
    assert new.load({P0: ["a"]}) == {P0: {"a": b"old"}}
    assert new.next_offset(P0) == 5
    assert new.next_offset(P1) == 2  # partitions still owned are saved


def test_a_batch_the_stored_offset_is_past_is_not_applied_again(
    new_store: Callable[[], StateStore],
) -> None:
    store = new_store()
    store.claim(P0)
    store.save({P0: PartitionWrite(0, 10, {"a": b"after batch"})})
    store.save({P0: PartitionWrite(0, 10, {"a": b"applied twice"})})  # a retry of the same batch
    assert store.load({P0: ["a"]}) == {P0: {"a": b"after batch"}}
    store.save({P0: PartitionWrite(10, 12, {"a": b"next"})})
    assert store.load({P0: ["a"]}) == {P0: {"a": b"next"}} and store.next_offset(P0) == 12


def rec(due_ms: int, seq: int = 1) -> bytes:
    """A user record whose next re-scoring is at ``due_ms`` (0: none), as the loop writes it:
    the due index follows the records."""
    return pack_state(
        UserState(
            1, 2, 0, (1, 0, 0, 0, 0, 0), 0, (0.5,) * 12, (4, 5, 0, 0), next_due_ms=due_ms, seq=seq
        )
    )


def test_due_users_and_the_watermark_are_saved_with_the_batch(
    new_store: Callable[[], StateStore],
) -> None:
    store = new_store()
    store.claim(P0)
    assert store.watermark(P0) == 0 and store.due_users(P0, 10**15, 10) == []
    users = {"a": rec(300), "b": rec(100), "c": rec(200)}
    store.save({P0: PartitionWrite(0, 4, users, 1000, {"a": 300, "b": 100, "c": 200})})
    assert store.watermark(P0) == 1000
    assert sorted(store.due_users(P0, 250, 10)) == ["b", "c"]  # up to the time
    assert store.due_users(P0, 10**15, 2) == ["b", "c"]  # the limit, earliest first
    store.save({P0: PartitionWrite(4, 6, {}, 1500, {"b": 0, "c": 900})})  # 0: not scheduled
    assert sorted(store.due_users(P0, 10**15, 10)) == ["a", "c"]
    assert store.load({P0: ["b", "c"]}) == {P0: {"b": rec(0), "c": rec(900)}}  # set in place
    assert new_store().watermark(P0) == 1500  # a restarted consumer resumes it
    # A batch the stored offset is past changes nothing, dues and watermark included.
    store.save({P0: PartitionWrite(4, 6, {}, 99, {"a": 0})})
    assert store.watermark(P0) == 1500 and sorted(store.due_users(P0, 10**15, 10)) == ["a", "c"]


def test_a_batch_of_more_users_than_one_bulk_command_holds_is_written_whole(
    new_store: Callable[[], StateStore],
) -> None:
    # Redis writes dues, labels and removals a few thousand members per command: 7,000 users
    # take two commands of each kind; the partition's other users and a second batch too.
    store = new_store()
    store.claim(P0)
    users = [f"u{i}" for i in range(7_000)]
    dues = {u: 1 + i for i, u in enumerate(users)}
    records = {u: rec(due) for u, due in dues.items()}
    store.save({P0: PartitionWrite(0, 1, records, 0, dues, pending=dict.fromkeys(users, b"L"))})
    assert sorted(store.due_users(P0, 10**15, 10_000)) == sorted(users)
    assert len(store.load_pending({P0: users})[P0]) == 7_000
    dropped, removed = users[:6_500], users[6_500:]
    store.save(
        {
            P0: PartitionWrite(
                1,
                2,
                {},
                0,
                dict.fromkeys(dropped, 0),
                pending=dict.fromkeys(dropped, b""),
                deleted=removed,
            )
        }
    )
    assert store.due_users(P0, 10**15, 10_000) == []
    assert store.load_pending({P0: users}) == {P0: {}}
    assert store.load({P0: users}) == {P0: dict.fromkeys(dropped, rec(0))}


def test_removed_users_lose_record_due_entry_and_labels_before_the_batch_is_written(
    new_store: Callable[[], StateStore],
) -> None:
    store = new_store()
    store.claim(P0)
    users = {"gone": rec(100, 1), "back": rec(200, 2), "kept": rec(300, 3)}
    dues = {"gone": 100, "back": 200, "kept": 300}
    labels = {"gone": b"L1", "back": b"L2", "kept": b"L3"}
    store.save({P0: PartitionWrite(0, 1, users, 0, dues, pending=labels)})
    # "back" was removed and came back in the same batch: its new record and due stay.
    write = PartitionWrite(
        1,
        2,
        {"back": rec(900, 4)},
        0,
        {"back": 900},
        deleted=["gone", "back"],
        audit=[b"a1", b"a2"],
    )
    store.save({P0: write})
    assert store.erasures(P0) == [b"a1", b"a2"]
    assert store.load({P0: list(users)}) == {P0: {"back": rec(900, 4), "kept": rec(300, 3)}}
    assert sorted(store.due_users(P0, 10_000, 10)) == ["back", "kept"]
    assert store.load_pending({P0: list(users)}) == {P0: {"kept": b"L3"}}
    # A retry of the same batch changes nothing.
    store.save({P0: PartitionWrite(1, 2, {}, 0, {}, deleted=["kept"], audit=[b"a1"])})
    assert store.load({P0: ["kept"]}) == {P0: {"kept": rec(300, 3)}}
    assert store.erasures(P0) == [b"a1", b"a2"] and store.erasures(P1) == []


def test_segment_sizes_follow_the_saved_deltas(new_store: Callable[[], StateStore]) -> None:
    store = new_store()
    store.claim(P0)
    store.claim(P1)
    store.save(
        {
            P0: PartitionWrite(0, 3, {}, segment_deltas={0: 2, 1: 1}),
            P1: PartitionWrite(0, 1, {}, segment_deltas={1: 1}),
        }
    )
    store.save({P0: PartitionWrite(3, 5, {}, segment_deltas={0: -2, 2: 2})})
    assert store.segment_sizes([P0, P1]) == {1: 2, 2: 2}
    assert store.segment_sizes([P1]) == {1: 1}
    store.save({P0: PartitionWrite(3, 5, {}, segment_deltas={2: 5})})  # applied before: skipped
    assert store.segment_sizes([P0]) == {1: 1, 2: 2}


def test_writing_without_a_claim_is_refused(new_store: Callable[[], StateStore]) -> None:
    with pytest.raises(PartitionLost):
        new_store().save({P0: PartitionWrite(0, 1, {"a": b"x"})})


def test_a_load_checks_ownership_before_anything_is_published(
    new_store: Callable[[], StateStore],
) -> None:
    first, second = new_store(), new_store()
    first.claim(P0)
    first.claim(P1)
    second.claim(P1)  # a rebalance gave P1 to another consumer
    with pytest.raises(PartitionLost) as taken:
        first.load({P0: ["a"], P1: ["b"]})
    assert taken.value.partitions == {P1}
    assert first.load({P0: ["a"]}) == {P0: {}}


def lose(store: StateStore, only_offset: bool = False) -> None:
    """What a Redis restart without persistence does (or a lost offset key alone)."""
    if isinstance(store, InMemoryStateStore):
        if only_offset:
            store._data[P0].next_offset = None
        else:
            store.lose_everything()
        return
    assert isinstance(store, RedisStateStore)
    pattern = store.key(P0, "offset") if only_offset else f"{store._prefix}:*"
    for key in store._client.scan_iter(pattern):
        store._client.delete(key)


@pytest.mark.parametrize("saved_before", [False, True])
def test_a_vanished_claim_is_lost_state_not_a_rebalance(
    new_store: Callable[[], StateStore],
    saved_before: bool,
) -> None:
    store = new_store()
    store.claim(P0)
    if saved_before:
        store.save({P0: PartitionWrite(0, 3, {"a": b"x"})})
    lose(store)
    with pytest.raises(StateLost):
        store.load({P0: ["a"]})
    with pytest.raises(StateLost):
        store.save({P0: PartitionWrite(3, 4, {"a": b"y"})})
    assert new_store().claim(P0) is None  # a restart rebuilds from the start of the log


def test_a_vanished_offset_is_lost_state(new_store: Callable[[], StateStore]) -> None:
    store = new_store()
    store.claim(P0)
    store.save({P0: PartitionWrite(0, 3, {"a": b"x"})})
    lose(store, only_offset=True)
    with pytest.raises(StateLost):
        store.load({P0: ["a"]})
    with pytest.raises(StateLost):
        store.save({P0: PartitionWrite(3, 4, {"a": b"y"})})


def test_an_offset_that_went_back_is_lost_state(new_store: Callable[[], StateStore]) -> None:
    """A failover to a replica that missed the last writes: the stored offset is behind the
    one this consumer saved. Writing on would skip the lost events."""
    store = new_store()
    store.claim(P0)
    store.claim(P1)
    # Each partition's offset is its own: saved together, neither looks behind the other's.
    store.save({P0: PartitionWrite(0, 3, {"a": b"x"}), P1: PartitionWrite(0, 10, {"b": b"x"})})
    store.save({P0: PartitionWrite(3, 5, {"a": b"y"})})
    assert store.load({P1: ["b"]}) == {P1: {"b": b"x"}}
    if isinstance(store, InMemoryStateStore):
        store._data[P0].next_offset = 3
    else:
        assert isinstance(store, RedisStateStore)
        store._client.set(store.key(P0, "offset"), 3)
    with pytest.raises(StateLost):
        store.load({P0: ["a"]})
    with pytest.raises(StateLost):
        store.save({P0: PartitionWrite(5, 6, {"a": b"z"})})
    assert new_store().claim(P0) == 3  # the restart rebuilds from there (stream.loop.rebuild)


def test_a_retried_save_that_had_applied_is_not_a_loss(
    new_store: Callable[[], StateStore],
) -> None:
    """The reply of a save was lost, so the batch is retried: it was applied, nothing else."""
    store = new_store()
    store.claim(P0)
    store.save({P0: PartitionWrite(0, 3, {"a": b"x"})})
    other = new_store()
    other._tokens = dict(store._tokens)  # type: ignore[attr-defined]
    other._saved = dict(store._saved)  # type: ignore[attr-defined]
    other.save({P0: PartitionWrite(3, 5, {"a": b"y"})})  # applied, but `store` never heard
    assert store.load({P0: ["a"]}) == {P0: {"a": b"y"}}
    store.save({P0: PartitionWrite(3, 5, {"a": b"y"})})  # the retry: a no-op, not a loss
    assert store.next_offset(P0) == 5


@pytest.mark.redis
def test_redis_keys_share_a_cluster_slot_per_partition_and_never_expire() -> None:
    client = store_client("cluster")
    prefix = unique("layout")
    store = RedisStateStore(client, prefix, buckets=8)
    store.claim(P0)
    write = PartitionWrite(0, 1, {"alice": rec(5)}, 5, {"alice": 5}, pending={"alice": b"L"})
    store.save({P0: write})
    keys = sorted(k.decode() for k in client.scan_iter(f"{prefix}:*"))
    bucket = bucket_of("alice", 8)
    assert keys == sorted(
        f"{prefix}:{{events-0}}:{suffix}"
        for suffix in (
            *("buckets", "due", f"b:{bucket}", f"l:{bucket // 4}"),
            *("offset", "owner", "watermark"),
        )
    )
    assert len({client.keyslot(k) for k in keys}) == 1
    assert all(client.ttl(k) == -1 for k in keys)  # idle users expire in event time instead
    stored = client.hget(f"{prefix}:{{events-0}}:b:{bucket}", "alice")
    assert expand(stored) == rec(5) and len(stored) < len(rec(5))  # its compact form
    assert client.zrange(f"{prefix}:{{events-0}}:due", 0, -1, withscores=True) == [
        (str(bucket).encode(), 5.0)
    ]
    for key in keys:
        client.delete(key)


def test_a_partition_keeps_its_bucket_count(new_store: Callable[[], StateStore]) -> None:
    """Buckets are fixed at the first claim: a consumer configured otherwise later still finds
    every user where the first put them."""
    store = new_store()
    store.claim(P0)
    users = {f"user-{i}": bytes([i]) for i in range(40)}
    store.save({P0: PartitionWrite(0, 1, users)})
    if isinstance(store, RedisStateStore):
        other = RedisStateStore(store._client, store._prefix, buckets=3)
        other.claim(P0)
        assert other.buckets(P0) == store.buckets(P0) != 3
        assert other.load({P0: list(users)}) == {P0: users}


def test_a_scan_returns_every_user_of_the_partition(new_store: Callable[[], StateStore]) -> None:
    store = new_store()
    store.claim(P0)
    store.claim(P1)
    users = {f"user-{i}:x*": bytes([i]) for i in range(250)}  # odd ids are fine
    store.save({P0: PartitionWrite(0, 1, users), P1: PartitionWrite(0, 1, {"other": b"o"})})
    seen: dict[str, bytes] = {}
    cursor, rounds = 0, 0
    while True:
        cursor, found = store.scan_users(P0, cursor, 40)
        seen.update(found)
        rounds += 1
        if cursor == 0:
            break
    assert seen == users and rounds > 1


@pytest.mark.redis
@pytest.mark.parametrize("kind", ["redis", "cluster"])
@pytest.mark.parametrize("runs_done", [0, 1, "all"])
def test_a_batch_logged_by_a_writer_that_died_is_saved_whole_by_the_next_owner(
    kind: str, runs_done: int | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save is logged, applied in runs of users and committed (``stream.redis.scripts``);
    the writer dies after the log and ``runs_done`` runs: the next owner finishes it, applying
    what must happen once (sizes, audit) once."""
    client = store_client(kind)
    prefix = unique("wal")
    dying = RedisStateStore(client, prefix, buckets=64)
    dying.claim(P0)
    dying.save({P0: PartitionWrite(0, 1, {"old": rec(50, 1)}, 10, {"old": 50})})
    users = {f"user-{i}": rec(100 + i, 2) for i in range(CHUNK_USERS + 100)}  # two runs
    write = PartitionWrite(
        1,
        9,
        users,
        20,
        {u: 100 + i for i, u in enumerate(users)} | {"old": 70},
        {3: 2},
        pending={"user-1": b"L"},
        deleted=["gone"],
        audit=[b"erased"],
    )
    original = RedisStateStore._commit

    def dies(self: RedisStateStore, *args: object) -> None:
        raise SystemExit("killed before the commit")

    monkeypatch.setattr(RedisStateStore, "_commit", dies)
    if runs_done != "all":  # the pipeline reaches Redis only up to the log and some runs
        runs, tail = dying._plan(P0, write)
        log = state_store._log(1, runs, tail)
        keys = [dying.key(P0, s) for s in ("owner", "offset", "wal")]
        token = dying._tokens[P0]
        assert dying._wal(keys=keys, args=[token, 1, 1, log]) == 1
        keys = [dying.key(P0, s) for s in ("owner", "wal", "due")]
        for run in runs[: int(runs_done)]:
            dying._chunk(keys=keys, args=[token, 1, *run])
    else:
        with pytest.raises(SystemExit):
            dying.save({P0: write})
    monkeypatch.setattr(RedisStateStore, "_commit", original)
    assert dying.next_offset(P0) == 1  # not committed

    heir = RedisStateStore(client, prefix)
    assert heir.claim(P0) == 9
    loaded = heir.load({P0: [*users, "old"]})[P0]
    assert loaded == users | {"old": with_next_due(rec(50, 1), 70)}
    assert heir.load_pending({P0: list(users)}) == {P0: {"user-1": b"L"}}
    assert heir.segment_sizes([P0]) == {3: 2} and heir.erasures(P0) == [b"erased"]
    assert heir.watermark(P0) == 20 and client.get(heir.key(P0, "wal")) is None
    assert sorted(heir.due_users(P0, 10**6, 10**4)) == sorted([*users, "old"])
    with pytest.raises(PartitionLost):  # the dead writer's retry, had it lived: fenced
        dying.save({P0: write})
    assert heir.segment_sizes([P0]) == {3: 2}
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
