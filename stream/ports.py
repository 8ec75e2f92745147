"""The ports: every dependency of the loop as a small Protocol.

Each has a real implementation (Kafka, Redis) and an in-memory twin (``stream/twins/broker.py``);
``tests/stream/test_*_contract.py`` runs one behaviour suite against both.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from operators.segments import SegmentSnapshot
from operators.tags import TagModel


@dataclass(frozen=True, slots=True, order=True)
class Partition:
    topic: str
    index: int

    def __str__(self) -> str:
        return f"{self.topic}-{self.index}"


@dataclass(frozen=True, slots=True)
class Record:
    partition: Partition
    offset: int
    key: bytes | None
    value: bytes | None  # None: a tombstone
    timestamp_ms: int


class AssignmentListener(Protocol):
    def assigned(self, partitions: Collection[Partition]) -> Mapping[Partition, int | None]:
        """Partitions were given to us; return where to resume each (None: from the start)."""

    def revoked(self, partitions: Collection[Partition]) -> None:
        """Partitions were taken away; called before another consumer gets them."""


class Committed(NamedTuple):
    offset: int  # the next offset to read
    metadata: str


class EventSource(Protocol):
    def subscribe(self, listener: AssignmentListener) -> None: ...

    def poll(self, max_records: int, timeout_s: float) -> list[Record]: ...

    def pause(self, partitions: Collection[Partition]) -> None:
        """Stop fetching these partitions until they are assigned again (lost to a rebalance
        we have not been told of yet)."""

    def commit(
        self, next_offsets: Mapping[Partition, int], metadata: Mapping[Partition, str] | None = None
    ) -> bool:
        """Record progress in the broker, with a short note per partition (``stream.loop.rebuild``:
        the state epoch). Redis holds the offsets we resume from; the broker's outlive a Redis
        loss, and tell how far outputs were already published."""

    def committed(self) -> dict[Partition, Committed]:
        """The last commit of each partition of the topic that has one."""

    def lag(self) -> dict[Partition, int]:
        """Records behind the end of each assigned partition, as far as the source knows."""

    def close(self) -> None: ...


class Sink(Protocol):
    def send(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None
    ) -> None:
        """Queue a record; a None value is a tombstone (compacted topics forget the key).
        ``partition``: where it goes; None: where the key hashes to."""

    def partitions(self, topic: str) -> int:
        """How many partitions ``topic`` has; raise DependencyError if it does not exist."""

    def flush(self) -> None:
        """Block until every send so far is acknowledged; raise DependencyError if one failed."""

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class PartitionWrite:
    """A processed batch of one partition: offsets ``first_offset`` to ``next_offset - 1``."""

    first_offset: int
    next_offset: int
    users: Mapping[str, bytes]
    watermark_ms: int = 0  # the partition's event-time watermark after the batch
    # user -> next re-scoring (0: none); a stored record not in ``users`` takes it in place
    # (``operators.record.with_next_due``): a re-scoring that moved nothing else.
    dues: Mapping[str, int] = field(default_factory=dict)
    segment_deltas: Mapping[int, int] = field(default_factory=dict)  # change in segment sizes
    pending: Mapping[str, bytes] = field(default_factory=dict)  # open labels; b"": none left
    # Users whose record, due entry and labels are deleted before the above is written.
    deleted: Collection[str] = ()
    audit: Sequence[bytes] = ()  # erasures applied by the batch, appended to the audit log


class StateStore(Protocol):
    def claim(self, partition: Partition) -> int | None:
        """Become the partition's only writer; return its stored next offset, if any."""

    def load(self, users: Mapping[Partition, Collection[str]]) -> dict[Partition, dict[str, bytes]]:
        """The stored records of these users (absent users are left out), in one round trip
        that also checks we still own each partition, before anything is published.

        Raises StateLost if a partition's owner token (or its offset, once one was stored)
        vanished, else PartitionLost naming the partitions another consumer claimed since.
        """

    def watermark(self, partition: Partition) -> int:
        """The partition's saved event-time watermark (0 if none)."""

    def due_users(self, partition: Partition, until_ms: int, limit: int) -> list[str]:
        """About ``limit`` users of the partition whose re-scoring is due at or before
        ``until_ms``, in the store's order (earliest first in memory; bucket by bucket in
        Redis); none once no user is due by then."""

    def scan_users(
        self, partition: Partition, cursor: int, count: int
    ) -> tuple[int, dict[str, bytes]]:
        """About ``count`` of the partition's user records from ``cursor`` (0 to start), and
        the cursor to go on from (0 once every user was returned at least once)."""

    def load_pending(
        self,
        users: Mapping[Partition, Collection[str]],
    ) -> dict[Partition, dict[str, bytes]]:
        """The users' open tag labels (``operators.pending.pack_pending``), absent users
        left out."""

    def segment_sizes(self, partitions: Collection[Partition]) -> dict[int, int]:
        """Users per segment in these partitions (kept by ``save`` from the batches' deltas)."""

    def erasures(self, partition: Partition) -> list[bytes]:
        """The partition's audit log of applied erasures, oldest first."""

    def save(self, writes: Mapping[Partition, PartitionWrite]) -> None:
        """Write each partition's users, due index, watermark and next offset atomically,
        fenced by our claim.

        A write whose ``first_offset`` the stored offset is already past was applied before (a
        retry after a partial save): it is skipped. Partitions we no longer own are not written;
        StateLost (token or offset vanished) or else PartitionLost (another owner) names them
        after the others are saved.
        """

    def next_offset(self, partition: Partition) -> int | None: ...

    def close(self) -> None: ...


class ModelStore(Protocol):
    def load(self) -> tuple[SegmentSnapshot | None, bytes | None]:
        """The latest snapshot and the trainer's own state (opaque bytes), if any."""

    def save(self, snapshot: SegmentSnapshot, trainer_state: bytes | None) -> None: ...

    def load_tags(self) -> dict[str, TagModel]:
        """The latest frozen tag models, by tag name."""

    def save_tags(self, models: Mapping[str, TagModel], tag_trainers: bytes | None = None) -> None:
        """Publish tag models; ``tag_trainers`` is the trainer's state, to resume from."""

    def load_snapshot(self) -> SegmentSnapshot | None:
        """The published segment model alone (what scorers refresh from)."""

    def load_tag_trainers(self) -> bytes | None:
        """The tag trainer's state saved with the last published tag models."""

    def load_lineage(self) -> dict[int, dict[str, Any]]:
        """Each segment's history (``operators.matching.lineage_records``), by id."""

    def save_lineage(self, records: Mapping[int, Mapping[str, Any]]) -> None: ...

    def load_segment_names(self) -> dict[int, str]:
        """The analysts' segment names (``PUT /v1/segments/{id}/name``), by segment id."""

    def hold_trainer_lease(self, token: str, lease_ms: int) -> bool:
        """Take the trainer lease, or renew it if ``token`` holds it; False if another does.

        One process trains and publishes models at a time; the lease expires ``lease_ms``
        after its last renewal, so a dead trainer is replaced.
        """


class Clock(Protocol):
    def time_s(self) -> float: ...
