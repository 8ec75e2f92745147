"""Which input partitions this process owns, and in what condition.

The base of ``Processor`` and the source's assignment listener: a partition is claimed in the
state store when assigned (resuming from the offset saved there, or rebuilt after a loss:
``stream.rebuild``), dropped and paused when another consumer fenced it, and marked unsaveable
when the store lost its state, which stops the process. The fenced save is here too (it turns
the store's refusals into those conditions), with the load of open labels.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

from stream.errors import PartitionLost, StateLost
from stream.learning import Learning
from stream.metrics import Metrics
from stream.ports import EventSource, Partition, PartitionWrite, StateStore
from stream.rebuild import Rebuilds
from stream.sweeps import Reassignments

log = logging.getLogger("stream.loop")


class Ownership:
    def __init__(
        self, source: EventSource, state_store: StateStore, learning: Learning, metrics: Metrics
    ) -> None:
        self.source = source
        self.state_store = state_store
        self.learning = learning
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
        floor = self.rebuilds.assigned(self.source, resume, self.learning.version)
        self.learning.keep_versions_above(floor)
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

    def _fenced(self, partitions: Collection[Partition]) -> None:
        """Another consumer claimed these: stop reading them until the rebalance tells us."""
        log.warning(
            "fenced: %s now belong to another consumer; pausing them", sorted(map(str, partitions))
        )
        self.metrics.partitions_lost.inc(len(partitions))
        self.source.pause(partitions)
        self.revoked(partitions)

    def _state_lost(self, lost: StateLost) -> None:
        """The store lost data: publish nothing more from it, keep the model, and stop."""
        log.error(
            "STATE LOST: %s. Nothing more is published for them; exiting so the restart "
            "rebuilds them from the log (docs/operations.md, 'After a Redis loss')",
            lost,
        )
        self.metrics.state_lost.inc(len(lost.partitions))
        self.unsaveable.update(lost.partitions & self.owned)
        self.learning.keep_model()
        raise lost

    def _save(self, writes: Mapping[Partition, PartitionWrite]) -> set[Partition]:
        """Step 6; returns the partitions saved (or found saved before by a retried call)."""
        saved = set(writes)
        try:
            self.state_store.save(writes)
        except StateLost as lost:
            self._state_lost(lost)
        except PartitionLost as taken:
            self._fenced(taken.partitions)
            saved -= taken.partitions
        return saved

    def _load_pending(
        self,
        users: Mapping[Partition, Collection[str]],
    ) -> dict[Partition, dict[str, bytes]]:
        """Open labels of the sampled users among ``users`` (nothing without predictive tags),
        as stored: the operators decode only those a scoring may move."""
        if not self.learning.learners:
            return {}
        return dict(self.state_store.load_pending(users))
