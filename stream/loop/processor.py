"""The processing loop: one batch at a time, in a fixed order.

For each batch:
  1. poll records from the input topic;
  2. decode and validate them (``operators.decoding``); rejects become dead letters;
  3. find the users whose re-scoring falls due by the partition's new watermark, and load them
     with the batch's users from the state store, in the round trip that checks we still own
     each partition (a partition lost to a rebalance is dropped and paused; one whose claim
     vanished means the store lost data: nothing more is published and the process exits);
  4. run the pure transition (``operators.pipeline.run_batch``) per partition: events and due
     re-scorings (users who went quiet) in event-time order, late events set aside;
  5. send change events, dead letters and late events, then flush: every output is acknowledged
     (an event whose processing raised is dead-lettered as ``processing_error``, its user left
     as before it);
  6. save each partition's users, due index, watermark and next offset in one atomic, fenced
     write;
  7. count the batch in the metrics, then commit the offsets to Kafka (only for lag tools: step
     6's offsets are the ones we trust);
  8. feed the trainer its sample and publish a model snapshot when one is due.

Guarantee: on (re)assignment a partition resumes from the offset saved in step 6, so a crash
anywhere redoes at most the unsaved batch: each event changes user state exactly once, and
outputs are at-least-once with deterministic ids (a redone batch re-sends the same
``change_id``s). Each step that talks to Kafka or Redis is retried on its own with the same
inputs, so a retried save writes what was published and counts once. A save refuses a batch
the stored offset is already past (a retry after a partial save), and one from a consumer that
lost the partition (fencing by owner token).
``tests/e2e/test_crash.py`` kills the service at each step and checks the final state.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from operators.columns import Matrix
from operators.events import EventLimits
from operators.labels import Label
from operators.pipeline import PipelineConfig, advance_watermark, run_batch
from operators.segments import SegmentSnapshot
from stream.errors import DependencyError, PartitionLost, StateLost
from stream.loop.batch import Batch, decode_records
from stream.loop.outputs import Outputs, Topics, send_all
from stream.loop.partitions import Partitions
from stream.loop.retry import with_retries
from stream.metrics import Metrics
from stream.models.publisher import Publisher
from stream.models.segment_trainer import SegmentTrainer
from stream.ports import (
    Clock,
    EventSource,
    Partition,
    PartitionWrite,
    Record,
    Sink,
    StateStore,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LoopConfig:
    topics: Topics
    max_batch_records: int
    sweep_batch_users: int
    poll_timeout_s: float
    limits: EventLimits
    retry_attempts: int
    pipeline: PipelineConfig


def _no_checkpoint(stage: str, batch: int) -> None:
    pass


class Processor:
    """Runs the loop over the partitions ``self.partitions`` owns (the source's assignment
    listener)."""

    def __init__(
        self,
        *,
        source: EventSource,
        sink: Sink,
        state_store: StateStore,
        publisher: Publisher,
        metrics: Metrics,
        clock: Clock,
        config: LoopConfig,
        checkpoint: Callable[[str, int], None] = _no_checkpoint,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.source = source
        self.state_store = state_store
        self.publisher = publisher
        self.metrics = metrics
        self.partitions = Partitions(source, state_store, publisher, metrics.partitions)
        self.sink = sink
        self.clock = clock
        self.config = config
        self.checkpoint = checkpoint  # test hook: the crash tests kill the process at a stage
        self.sleep = sleep
        self.moves: Counter[int] = Counter()  # segment enters + exits since the last snapshot
        self.batches = 0
        self.last_loop_s = clock.time_s()
        if publisher.snapshot is not None:
            metrics.model.set_model_version(publisher.snapshot.version)

    @property
    def snapshot(self) -> SegmentSnapshot | None:
        return self.publisher.snapshot

    @property
    def trainer(self) -> SegmentTrainer | None:
        return self.publisher.trainer

    def _no_vectors(self) -> Matrix:
        return np.empty((0, len(self.config.pipeline.segment_features)))

    def healthy(self, stale_after_s: float) -> bool:
        """Polling recently, and able to save every partition it owns (``/healthz``)."""
        return (
            not self.partitions.unsaveable
            and self.clock.time_s() - self.last_loop_s < stale_after_s
        )

    # -- the loop ---------------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Process batches until ``should_stop()``; the batch in hand is always finished first."""
        while not should_stop():
            self.run_once()

    def run_once(self) -> int:
        """Poll and fully process one batch; return how many records it held."""
        with self.metrics.stage("poll"):
            records = self._with_retries(
                "poll",
                lambda: self.source.poll(self.config.max_batch_records, self.config.poll_timeout_s),
            )
        self.last_loop_s = self.clock.time_s()
        for part in self.partitions.rebuilds.split(records) if records else []:
            self._process(part)  # two parts when a rebuild ends inside the batch
        if not records:  # idle: still follow the models the trainer publishes
            self._with_retries("train", lambda: self._train(self._no_vectors(), []))
        self.reassign_some()  # a chunk of users out of retired segments, if a model retired any
        return len(records)

    def _process(self, records: list[Record]) -> None:
        self.batches += 1
        self.checkpoint("after_poll", self.batches)
        started = time.perf_counter()
        self.metrics.events_in_progress.set(len(records))
        with self.metrics.stage("decode"):
            batch = decode_records(
                records, self.config.limits, self.config.topics, int(self.clock.time_s() * 1000)
            )
        vectors, labels = self._run(batch)
        self.metrics.events_in_progress.set(0)
        self.metrics.saved(records, batch.next_offsets, self.clock.time_s())
        with self.metrics.stage("train"):
            self._with_retries("train", lambda: self._train(vectors, labels))
        self.metrics.batch_duration.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(records))
        self.metrics.partitions.lag(self.source.lag(), self.partitions.owned)
        self.last_loop_s = self.clock.time_s()
        self.metrics.last_batch.set(self.last_loop_s)

    def _run(self, batch: Batch) -> tuple[Matrix, list[Label]]:
        """Steps 3-7 for the batch's partitions; returns the training sample and labels."""
        with self.metrics.stage("load"):
            dues, stored, pending = self._with_retries("load", lambda: self._load(batch))
        started = time.perf_counter()
        writes: dict[Partition, PartitionWrite] = {}
        training: list[Matrix] = []
        labels: list[Label] = []
        quiet: set[Partition] = set()
        for partition in list(batch.next_offsets):
            # A sweep moves time without events: to its forced watermark.
            watermark = max(
                self.partitions.watermarks.get(partition, 0), batch.until_ms.get(partition, 0)
            )
            outcome = run_batch(
                stored.get(partition, {}),
                batch.events.get(partition, []),
                self.snapshot,
                self.config.pipeline,
                watermark,
                dues[partition],
                self.publisher.tag_models,
                pending.get(partition, {}),
                batch.reassign.get(partition, ()),
            )
            outputs = batch.outputs.setdefault(partition, Outputs(self.config.topics, batch.now_ms))
            outputs.seq_base = self.partitions.rebuilds.seq_base(partition)
            outputs.names = self.publisher.names
            if self.partitions.rebuilds.quiet(partition, batch.next_offsets[partition]):
                outputs.quiet = True  # published before the loss: state only
                outputs.records.clear()  # (the decoder's dead letters)
                quiet.add(partition)
            outputs.outcome(outcome, batch.sources)
            if partition not in quiet:
                if len(outcome.training_vectors):
                    training.append(outcome.training_vectors)
                labels.extend(outcome.labels)
            writes[partition] = PartitionWrite(
                batch.first_offsets[partition],
                batch.next_offsets[partition],
                outcome.records,
                outcome.watermark_ms,
                outcome.dues,
                outputs.segment_deltas(),
                outcome.pending,
                outcome.removed,
                outputs.audit,
            )
        self.metrics.stage_done("operators", started)
        with self.metrics.stage("produce"):
            self._with_retries("produce", lambda: send_all(batch.outputs.values(), self.sink))
        self.checkpoint("after_flush", self.batches)
        with self.metrics.stage("save"):
            saved = self._with_retries("save", lambda: self.partitions.save(writes))
        self.checkpoint("after_save", self.batches)
        for partition in saved:
            self.partitions.watermarks[partition] = writes[partition].watermark_ms
            if partition in quiet:
                self.metrics.partitions.rebuilt_events.inc(
                    batch.next_offsets[partition] - batch.first_offsets[partition]
                )
                continue
            tally = batch.outputs[partition].tally
            self.metrics.count(tally)
            self.moves.update(tally.segment_touches)
        offsets = {p: o for p, o in batch.next_offsets.items() if p in saved}
        batch.next_offsets = offsets
        if not batch.until_ms:  # a sweep has no new offsets to commit
            offsets = self.partitions.rebuilds.saved(offsets)
            if offsets:
                with self.metrics.stage("commit"):
                    committed = self.source.commit(
                        offsets, self.partitions.rebuilds.notes(offsets, self.publisher.version)
                    )
                self.metrics.partitions.offset_commits.labels(
                    result="success" if committed else "failure"
                ).inc()
        self.checkpoint("after_commit", self.batches)
        return (np.vstack(training) if training else self._no_vectors()), labels

    def _load(
        self, batch: Batch
    ) -> tuple[
        dict[Partition, list[str]],
        dict[Partition, dict[str, bytes]],
        dict[Partition, dict[str, bytes]],
    ]:
        """Step 3: due users, their records and open labels, with the ownership check."""
        while True:
            dues: dict[Partition, list[str]] = {}
            for partition in batch.next_offsets:
                until = batch.until_ms.get(partition) or advance_watermark(
                    self.partitions.watermarks.get(partition, 0),
                    batch.events.get(partition, []),
                    self.config.pipeline.late_grace_ms,
                )
                dues[partition] = self.state_store.due_users(
                    partition, until, self.config.sweep_batch_users
                )
            # In a fixed order (events', then due, then reassigned users), never a set's: the
            # order of a batch's users orders its moments and training sample, and a replay
            # must give the same answers in any process, whatever its string hash seed.
            users = {
                p: list(
                    dict.fromkeys(
                        [
                            *(e.user_id for e in batch.events.get(p, [])),
                            *dues[p],
                            *batch.reassign.get(p, ()),
                        ]
                    )
                )
                for p in batch.next_offsets
            }
            try:
                stored = self.state_store.load(users)
            except StateLost as lost:
                self.partitions.state_lost(lost)
            except PartitionLost as taken:
                self.partitions.fenced(taken.partitions)
                for partition in taken.partitions:  # left to the new owner
                    batch.next_offsets.pop(partition, None)
                    batch.outputs.pop(partition, None)
                continue
            return dues, stored, self.partitions.load_pending(users)

    def run_pass(self, batch: Batch) -> int:
        """Steps 3-8 for a pass with no new records (a sweep); returns the re-scorings."""
        vectors, labels = self._run(batch)
        self._train(vectors, labels)
        return sum(o.tally.rescored for o in batch.outputs.values())

    def _train(self, vectors: Matrix, labels: list[Label]) -> None:
        before = self.snapshot
        if self.publisher.learn_many(vectors, labels) and self.snapshot is not None:
            self.partitions.reassignments.model_changed(
                before, self.snapshot, self.partitions.owned
            )
            if self.publisher.leading:
                self.partitions.rebuilds.note_model(self.source, self.publisher.version)
            sizes = self.state_store.segment_sizes(self.partitions.owned)
            self.metrics.model.segment_figures(self.snapshot.segment_ids, sizes, self.moves)
            self.moves.clear()

    def _with_retries(self, what: str, action: Callable[[], T]) -> T:
        return with_retries(what, action, self.config.retry_attempts, self.metrics, self.sleep)

    # -- passes with no new records --------------------------------------------------------

    def reassign_some(self) -> int:
        """One chunk of the scan for users in retired segments; returns the users re-scored."""
        snapshot = self.snapshot
        if not self.partitions.reassignments.cursors or snapshot is None:
            return 0
        try:
            chunk = self.partitions.reassignments.next_chunk(
                self.state_store,
                snapshot,
                self.config.sweep_batch_users,
                # Not while a partition is rebuilt: its outputs are held back until it catches up.
                ready=lambda p: (
                    p in self.partitions.owned and p not in self.partitions.rebuilds.until
                ),
            )
        except DependencyError as exc:  # the scan resumes from the same cursor next time
            log.warning("scanning for users in retired segments: %s", exc)
            return 0
        if not chunk or not chunk[1]:
            return 0
        partition, users = chunk
        offset = self.state_store.next_offset(partition)
        if offset is None:
            return 0
        watermark = self.partitions.watermarks.get(partition, 0)
        batch = Batch(
            int(self.clock.time_s() * 1000),
            {partition: offset},
            {partition: offset},
            until_ms={partition: watermark},
            reassign={partition: users},
        )
        return self.run_pass(batch)

    def sweep_until(self, at_ms: int) -> int:
        """Let event time pass to ``at_ms`` with no events: re-score every user due by then.

        For replays and evaluations, whose input ends while users are still due; the live loop
        only moves time with events. The same path as a batch, with no records. Returns the
        number of re-scorings.
        """
        rescored = 0
        for partition in sorted(self.partitions.owned, key=str):
            offset = self.state_store.next_offset(partition)
            if offset is None:
                continue
            until = max(self.partitions.watermarks.get(partition, 0), at_ms)
            while partition in self.partitions.owned and self.state_store.due_users(
                partition, until, 1
            ):
                batch = Batch(
                    int(self.clock.time_s() * 1000),
                    {partition: offset},
                    {partition: offset},
                    until_ms={partition: until},
                )
                rescored += self.run_pass(batch)
        return rescored
