"""Passes of the loop with no new records: event time swept forward (replays), and users moved
out of segments a new model retired.

A model snapshot can retire a segment (its center moved too far to keep its id). Users in it
would keep the retired id until their next scoring, up to ``SEGSTREAM_RESCORE_INTERVAL_S`` of
event time later; instead, each process scans the user records of the partitions it owns, a
chunk per loop iteration, and re-scores those users at the partition's watermark: they take
the nearest segment at once, with a change event (``event_id`` ``reassign:v<version>``).
The same scan runs when a process adopts its first model: users it built while no model was
published (a new deployment, or a rebuild after Redis lost everything) have no segment yet,
and once the stream is quiet no event would ever score them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from operators.segments import SegmentSnapshot
from operators.state_layout import unpack_state
from stream.batch import Batch
from stream.errors import DependencyError
from stream.ports import Partition, StateStore

if TYPE_CHECKING:
    from stream.loop import Processor

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Reassignments:
    """Partitions still to scan for users in retired segments, and where each scan stands."""

    cursors: dict[Partition, int] = field(default_factory=dict)

    def model_changed(
        self,
        before: SegmentSnapshot | None,
        after: SegmentSnapshot,
        owned: Collection[Partition],
    ) -> None:
        if before is None or set(before.segment_ids) - set(after.segment_ids):
            self.cursors = dict.fromkeys(owned, 0)  # (re)start every scan

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
            segments = {user: unpack_state(packed).segment for user, packed in found.items()}
            return partition, [user for user, segment in segments.items() if segment not in current]
        return None


def reassign_some(processor: Processor) -> int:
    """One chunk of the scan for users in retired segments; returns the users re-scored."""
    snapshot = processor.snapshot
    if not processor.reassignments.cursors or snapshot is None:
        return 0
    try:
        chunk = processor.reassignments.next_chunk(
            processor.state_store,
            snapshot,
            processor.config.sweep_batch_users,
            # Not while a partition is rebuilt: its outputs are held back until it catches up.
            ready=lambda p: p in processor.owned and p not in processor.rebuilds.until,
        )
    except DependencyError as exc:  # the scan resumes from the same cursor next time
        log.warning("scanning for users in retired segments: %s", exc)
        return 0
    if not chunk or not chunk[1]:
        return 0
    partition, users = chunk
    offset = processor.state_store.next_offset(partition)
    if offset is None:
        return 0
    watermark = processor.watermarks.get(partition, 0)
    batch = Batch(
        int(processor.clock.time_s() * 1000),
        {partition: offset},
        {partition: offset},
        until_ms={partition: watermark},
        reassign={partition: users},
    )
    return processor.run_pass(batch)


def sweep_until(processor: Processor, at_ms: int) -> int:
    """Let event time pass to ``at_ms`` with no events: re-score every user due by then.

    For replays and evaluations, whose input ends while users are still due; the live loop
    only moves time with events. The same path as a batch, with no records. Returns the
    number of re-scorings.
    """
    rescored = 0
    for partition in sorted(processor.owned, key=str):
        offset = processor.state_store.next_offset(partition)
        if offset is None:
            continue
        until = max(processor.watermarks.get(partition, 0), at_ms)
        while partition in processor.owned and processor.state_store.due_users(partition, until, 1):
            batch = Batch(
                int(processor.clock.time_s() * 1000),
                {partition: offset},
                {partition: offset},
                until_ms={partition: until},
            )
            rescored += processor.run_pass(batch)
    return rescored
