"""Which input partitions this process owns, and in what condition.

The source's assignment listener, held by the ``Processor``: a partition is claimed in the
state store when assigned (resuming from the offset saved there, or rebuilt after a loss:
``stream.loop.rebuild``), dropped and paused when another consumer fenced it, and marked unsaveable
when the store lost its state, which stops the process. The fenced save is here too (it turns
the store's refusals into those conditions), with the load of open labels.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from operators.record import read_records
from operators.segments import SegmentSnapshot
from stream.errors import PartitionLost, StateLost
from stream.loop.rebuild import Rebuilds
from stream.metrics import PartitionMetrics
from stream.models.publisher import Publisher
from stream.ports import EventSource, Partition, PartitionWrite, StateStore

log = logging.getLogger("stream.loop")


@dataclass(slots=True)
class Reassignments:
    """Partitions still to scan for users in retired segments, and where each scan stands.

    A model snapshot can retire a segment (its center moved too far to keep its id). Users in
    it would keep the retired id until their next scoring, up to
    ``SEGSTREAM_RESCORE_INTERVAL_S`` of event time later; instead, each process scans the user
    records of the partitions it owns, a chunk per loop iteration
    (``Processor.reassign_some``), and re-scores those users at the partition's watermark: they
    take the nearest segment at once, with a change event (``event_id``
    ``reassign:v<version>``). The same scan runs when a process adopts its first model: users
    it built while no model was published (a new deployment, or a rebuild after Redis lost
    everything) have no segment yet, and once the stream is quiet no event would ever score
    them.
    """

    cursors: dict[Partition, int] = field(default_factory=dict)

    def model_changed(
        self,
        before: SegmentSnapshot | None,
        after: SegmentSnapshot,
        owned: Collection[Partition],
    ) -> None:
        if before is None or set(before.segment_ids) - set(after.segment_ids):
            # (Re)start every scan, in partition order: a set's order varies by process.
            self.cursors = dict.fromkeys(sorted(owned), 0)

    def revoked(self, partitions: Collection[Partition]) -> None:
        for partition in partitions:
            self.cursors.pop(partition, None)

    def next_chunk(
        self,
        store: StateStore,
        snapshot: SegmentSnapshot,
        count: int,
        ready: Callable[[Partition], bool],
    ) -> tuple[Partition, list[str]] | None:
        """The next chunk's users whose segment ``snapshot`` does not have (or none at all)."""
        current = set(snapshot.segment_ids)
        for partition, cursor in list(self.cursors.items()):
            if not ready(partition):
                continue
            following, found = store.scan_users(partition, cursor, count)
            if following:
                self.cursors[partition] = following
            else:
                del self.cursors[partition]
            segments = read_records(list(found.values()))["segment"].tolist()
            users = [
                u for u, segment in zip(found, segments, strict=True) if segment not in current
            ]
            return partition, users
        return None


class Partitions:
    def __init__(
        self,
        source: EventSource,
        state_store: StateStore,
        publisher: Publisher,
        metrics: PartitionMetrics,
    ) -> None:
        self.source = source
        self.state_store = state_store
        self.publisher = publisher
        self.metrics = metrics
        self.owned: set[Partition] = set()
        self.unsaveable: set[Partition] = set()  # owned, but their state can no longer be saved
        self.watermarks: dict[Partition, int] = {}
        self.rebuilds = Rebuilds()  # epochs, and partitions rebuilding after a state loss
        self.reassignments = Reassignments()  # scans for users in retired segments

    def assigned(self, partitions: Collection[Partition]) -> dict[Partition, int | None]:
        resume = {p: self.state_store.claim(p) for p in partitions}
        for partition in partitions:
            self.watermarks[partition] = self.state_store.watermark(partition)
        floor = self.rebuilds.assigned(self.source, resume, self.publisher.version)
        self.publisher.keep_versions_above(floor)
        self.owned.update(partitions)
        self.unsaveable.difference_update(partitions)
        self.metrics.rebalanced("assigned", partitions, len(self.owned))
        log.info(
            "assigned %s, resuming at %s",
            sorted(map(str, partitions)),
            {str(p): o for p, o in sorted(resume.items())},
        )
        return resume

    def revoked(self, partitions: Collection[Partition]) -> None:
        self.owned.difference_update(partitions)
        self.rebuilds.revoked(partitions)
        self.reassignments.revoked(partitions)
        self.unsaveable.difference_update(partitions)
        self.metrics.rebalanced("revoked", partitions, len(self.owned))
        log.info("revoked %s", sorted(map(str, partitions)))

    def fenced(self, partitions: Collection[Partition]) -> None:
        """Another consumer claimed these: stop reading them until the rebalance tells us."""
        log.warning(
            "fenced: %s now belong to another consumer; pausing them", sorted(map(str, partitions))
        )
        self.metrics.partitions_lost.inc(len(partitions))
        self.source.pause(partitions)
        self.revoked(partitions)

    def state_lost(self, lost: StateLost) -> None:
        """The store lost data: publish nothing more from it, keep the model, and stop."""
        log.error(
            "STATE LOST: %s. Nothing more is published for them; exiting so the restart "
            "rebuilds them from the log (docs/operations.md, 'After a Redis loss')",
            lost,
        )
        self.metrics.state_lost.inc(len(lost.partitions))
        self.unsaveable.update(lost.partitions & self.owned)
        self.publisher.keep_model()
        raise lost

    def save(self, writes: Mapping[Partition, PartitionWrite]) -> set[Partition]:
        """Step 6; returns the partitions saved (or found saved before by a retried call)."""
        saved = set(writes)
        try:
            self.state_store.save(writes)
        except StateLost as lost:
            self.state_lost(lost)
        except PartitionLost as taken:
            self.fenced(taken.partitions)
            saved -= taken.partitions
        return saved

    def load_pending(
        self,
        users: Mapping[Partition, Collection[str]],
    ) -> dict[Partition, dict[str, bytes]]:
        """Open labels of the sampled users among ``users`` (nothing without predictive tags),
        as stored: the operators decode only those a scoring may move."""
        if not self.publisher.tag_trainers:
            return {}
        return dict(self.state_store.load_pending(users))
