"""The processing loop: one batch at a time, in a fixed order.

For each batch:
  1. poll records from the input topic;
  2. decode and validate them (``operators.events``); rejects become dead letters;
  3. find the users whose re-scoring falls due by the partition's new watermark, and load them
     with the batch's users from the state store;
  4. run the pure transition (``operators.pipeline.process_events``) per partition: events,
     then due re-scorings (users who went quiet), late events set aside;
  5. send change events, dead letters and late events, then flush: every output is acknowledged;
  6. save each partition's users, due index, watermark and next offset in one atomic, fenced
     write;
  7. commit the offsets to Kafka (only for lag tools: step 6's offsets are the ones we trust);
  8. feed the trainer its sample and publish a model snapshot when one is due.

Guarantee: on (re)assignment a partition resumes from the offset saved in step 6, so a crash
anywhere redoes at most the unsaved batch: each event changes user state exactly once, and
outputs are at-least-once with deterministic ids (a redone batch re-sends the same
``change_id``s). A save refuses a batch the stored offset is already past (a retry after a
partial save), and one from a consumer that lost the partition (fencing by owner token).
``tests/e2e/test_crash.py`` kills the service at each step and checks the final state.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import TypeVar

from operators.changes import encode_alert, encode_change
from operators.events import Event, Rejected, decode_event
from operators.features import pack_state, unpack_state
from operators.pipeline import (
    BatchOutcome,
    Label,
    PipelineConfig,
    advance_watermark,
    process_events,
)
from operators.segments import SegmentSnapshot
from operators.tags import PendingLabel, pack_pending, unpack_pending
from stream.dead_letters import encode_dead_letter
from stream.errors import DependencyError, PartitionLost
from stream.learning import Learning
from stream.metrics import INVALID_TYPE, Metrics
from stream.ports import (
    Clock,
    EventSource,
    ModelStore,
    Partition,
    PartitionWrite,
    Record,
    Sink,
    StateStore,
)
from stream.trainer import SegmentTrainer

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LoopConfig:
    output_topic: str
    dlq_topic: str
    late_topic: str
    alert_topic: str
    max_batch_records: int
    sweep_batch_users: int
    poll_timeout_s: float
    max_message_bytes: int
    retry_attempts: int
    pipeline: PipelineConfig


def _no_checkpoint(stage: str, batch: int) -> None:
    pass


class Processor:
    """Runs the loop; it is also the source's assignment listener."""

    def __init__(
        self, *, source: EventSource, sink: Sink, state_store: StateStore,
        model_store: ModelStore, learning: Learning, metrics: Metrics, clock: Clock,
        config: LoopConfig,
        checkpoint: Callable[[str, int], None] = _no_checkpoint,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.source = source
        self.sink = sink
        self.state_store = state_store
        self.model_store = model_store
        self.learning = learning
        self.metrics = metrics
        self.clock = clock
        self.config = config
        self.checkpoint = checkpoint  # test hook: the crash tests kill the process at a stage
        self.sleep = sleep
        self.owned: set[Partition] = set()
        self.watermarks: dict[Partition, int] = {}
        self.moves: Counter[int] = Counter()  # segment enters + exits since the last snapshot
        self._labelled_segments: set[int] = set()
        self.batches = 0
        self.last_loop_s = clock.time_s()
        if learning.snapshot is not None:
            metrics.set_model_version(learning.snapshot.version)

    @property
    def snapshot(self) -> SegmentSnapshot | None:
        return self.learning.snapshot

    @property
    def trainer(self) -> SegmentTrainer | None:
        return self.learning.trainer

    # -- assignment listener ----------------------------------------------------------------

    def assigned(self, partitions: Collection[Partition]) -> dict[Partition, int | None]:
        resume = {p: self.state_store.claim(p) for p in partitions}
        for partition in partitions:
            self.watermarks[partition] = self.state_store.watermark(partition)
        self.owned.update(partitions)
        self.metrics.rebalanced("assigned", partitions, len(self.owned))
        log.info("assigned %s, resuming at %s", sorted(map(str, partitions)),
                 {str(p): o for p, o in sorted(resume.items())})
        return resume

    def revoked(self, partitions: Collection[Partition]) -> None:
        self.owned.difference_update(partitions)
        self.metrics.rebalanced("revoked", partitions, len(self.owned))
        log.info("revoked %s", sorted(map(str, partitions)))

    # -- the loop ---------------------------------------------------------------------------

    def run(self, should_stop: Callable[[], bool]) -> None:
        """Process batches until ``should_stop()``; the batch in hand is always finished first."""
        while not should_stop():
            self.run_once()

    def run_once(self) -> int:
        """Poll and fully process one batch; return how many records it held."""
        with self.metrics.stage("poll"):
            records = self._with_retries(
                "poll", lambda: self.source.poll(self.config.max_batch_records,
                                                 self.config.poll_timeout_s))
        self.last_loop_s = self.clock.time_s()
        if not records:
            return 0
        self.batches += 1
        self.checkpoint("after_poll", self.batches)
        started = time.perf_counter()
        self.metrics.events_in_progress.set(len(records))
        vectors, labels = self._with_retries("process", lambda: self._process(records))
        self.metrics.events_in_progress.set(0)
        with self.metrics.stage("train"):
            self._with_retries("train", lambda: self._train(vectors, labels))
        self.metrics.batch_duration.observe(time.perf_counter() - started)
        self.metrics.batch_size.observe(len(records))
        self.metrics.lag(self.source.lag(), self.owned)
        self.last_loop_s = self.clock.time_s()
        self.metrics.last_batch.set(self.last_loop_s)
        return len(records)

    def _process(self, records: list[Record]) -> tuple[list[dict[str, float]], list[Label]]:
        """Steps 2-7 for one batch; safe to call again for the same records after a failure."""
        now_ms = int(self.clock.time_s() * 1000)
        events: dict[Partition, list[Event]] = defaultdict(list)
        first_offsets: dict[Partition, int] = {}
        next_offsets: dict[Partition, int] = {}
        dead_letters: list[tuple[Record, Rejected]] = []
        sources: dict[int, Record] = {}  # decoded event -> its record, for the late topic
        consumed: Counter[tuple[str, str]] = Counter()
        decode_started = time.perf_counter()
        for record in records:
            first_offsets.setdefault(record.partition, record.offset)
            next_offsets[record.partition] = record.offset + 1
            decoded = decode_event(record.key, record.value, self.config.max_message_bytes)
            if isinstance(decoded, Rejected):
                dead_letters.append((record, decoded))
                consumed[record.partition.topic, INVALID_TYPE] += 1
            else:
                events[record.partition].append(decoded)
                sources[id(decoded)] = record
                consumed[record.partition.topic, decoded.type] += 1
        self.metrics.stage_done("decode", decode_started)
        load_started = time.perf_counter()

        grace = self.config.pipeline.late_grace_ms
        due: dict[Partition, list[str]] = {}
        for partition in next_offsets:
            until = advance_watermark(
                self.watermarks.get(partition, 0), events.get(partition, []), grace)
            due[partition] = self.state_store.due_users(
                partition, until, self.config.sweep_batch_users)
        users = {p: {e.user_id for e in events.get(p, [])} | set(due[p]) for p in next_offsets}
        stored = self.state_store.load(users)
        pending = self._load_pending(users)
        self.metrics.stage_done("load", load_started)
        operators_started = time.perf_counter()
        writes: dict[Partition, PartitionWrite] = {}
        training: list[dict[str, float]] = []
        labels: list[Label] = []
        watermarks: dict[Partition, int] = {}
        for partition, next_offset in next_offsets.items():
            states = {u: unpack_state(b) for u, b in stored.get(partition, {}).items()}
            outcome = process_events(
                states, events.get(partition, []), self.snapshot, self.config.pipeline,
                self.watermarks.get(partition, 0), due[partition], self.learning.tag_models,
                pending.get(partition, {}))
            deltas = self._publish_changes(outcome, now_ms)
            for event, watermark in outcome.late:
                record = sources[id(event)]
                late = Rejected("late", f"event time {event.ts_ms} is before the partition's "
                                f"watermark {watermark}")
                self.sink.send(self.config.late_topic, record.key,
                               encode_dead_letter(record, late, now_ms))
            self.metrics.events_late.inc(len(outcome.late))
            self.metrics.users_rescored.inc(outcome.rescored)
            for event_type, count in outcome.processed_by_type.items():
                self.metrics.events_processed.labels(type=event_type).inc(count)
            self.metrics.events_duplicate.inc(outcome.duplicates)
            training.extend(outcome.training_vectors)
            labels.extend(outcome.labels)
            watermarks[partition] = outcome.watermark_ms
            writes[partition] = PartitionWrite(
                first_offsets[partition], next_offset,
                {u: pack_state(s) for u, s in outcome.states.items()},
                outcome.watermark_ms, outcome.dues, deltas,
                {u: pack_pending(p) for u, p in outcome.pending.items()})
        self.metrics.stage_done("operators", operators_started)
        produce_started = time.perf_counter()
        for record, rejected in dead_letters:
            self.sink.send(self.config.dlq_topic, record.key,
                           encode_dead_letter(record, rejected, now_ms))
            self.metrics.events_dead_lettered.labels(reason=rejected.reason).inc()
            log.debug("dead-lettered %s@%d: %s", record.partition, record.offset, rejected.detail)
        self.sink.flush()
        self.metrics.stage_done("produce", produce_started)
        self.checkpoint("after_flush", self.batches)

        save_started = time.perf_counter()
        try:
            self.state_store.save(writes)
        except PartitionLost as lost:
            self.metrics.partitions_lost.inc(len(lost.partitions))
            log.warning("%s; their batches are left to the new owner", lost)
            self.owned.difference_update(lost.partitions)
            for partition in lost.partitions:
                next_offsets.pop(partition, None)
                watermarks.pop(partition, None)
        self.watermarks.update(watermarks)
        self.metrics.stage_done("save", save_started)
        self.checkpoint("after_save", self.batches)
        for (topic, event_type), count in consumed.items():
            self.metrics.events_consumed.labels(topic=topic, type=event_type).inc(count)
        with self.metrics.stage("commit"):
            committed = self.source.commit(next_offsets)
        self.metrics.offset_commits.labels(result="success" if committed else "failure").inc()
        self.checkpoint("after_commit", self.batches)
        self.metrics.saved(records, next_offsets, self.clock.time_s())
        return training, labels

    def sweep_until(self, at_ms: int) -> int:
        """Let event time pass to ``at_ms`` with no events: re-score every user due by then.

        For replays and evaluations, whose input ends while users are still due; the live loop
        only moves time with events. Returns the number of re-scorings.
        """
        now_ms = int(self.clock.time_s() * 1000)
        rescored = 0
        for partition in sorted(self.owned, key=str):
            offset = self.state_store.next_offset(partition)
            if offset is None:
                continue
            watermark = max(self.watermarks.get(partition, 0), at_ms)
            while due := self.state_store.due_users(
                    partition, watermark, self.config.sweep_batch_users):
                stored = self.state_store.load({partition: due}).get(partition, {})
                states = {u: unpack_state(b) for u, b in stored.items()}
                outcome = process_events(
                    states, [], self.snapshot, self.config.pipeline, watermark, due,
                    self.learning.tag_models,
                    self._load_pending({partition: due}).get(partition, {}))
                deltas = self._publish_changes(outcome, now_ms)
                self.sink.flush()
                self.state_store.save({partition: PartitionWrite(
                    offset, offset, {u: pack_state(s) for u, s in outcome.states.items()},
                    watermark, outcome.dues, deltas,
                    {u: pack_pending(p) for u, p in outcome.pending.items()})})
                self.watermarks[partition] = watermark
                self.metrics.users_rescored.inc(outcome.rescored)
                rescored += outcome.rescored
                self._train(outcome.training_vectors, outcome.labels)
        return rescored

    def _load_pending(
        self, users: Mapping[Partition, Collection[str]],
    ) -> dict[Partition, dict[str, list[PendingLabel]]]:
        """Open labels of the sampled users among ``users`` (nothing without predictive tags)."""
        if not self.learning.learners:
            return {}
        loaded = self.state_store.load_pending(users)
        return {p: {u: unpack_pending(b) for u, b in found.items()} for p, found in loaded.items()}

    def _publish_changes(self, outcome: BatchOutcome, now_ms: int) -> dict[int, int]:
        """Send change events and alerts; count transitions; return segment size changes."""
        for change, tag in outcome.alerts:
            self.sink.send(self.config.alert_topic, change.user_id.encode(),
                           encode_alert(change, tag, now_ms))
            self.metrics.alerts.labels(tag=tag).inc()
        changes = outcome.changes
        deltas: Counter[int] = Counter()
        for change in changes:
            self.sink.send(self.config.output_topic, change.user_id.encode(),
                           encode_change(change, now_ms))
            for tag in change.tags_added:
                self.metrics.tag_transitions.labels(tag=tag, direction="enter").inc()
            for tag in change.tags_removed:
                self.metrics.tag_transitions.labels(tag=tag, direction="exit").inc()
            before, after = change.segment_before, change.segment_after
            if before == after:
                continue
            self.metrics.segment_transitions.labels(
                **{"from": "none" if before is None else str(before),
                   "to": "none" if after is None else str(after)}).inc()
            for segment, step in ((before, -1), (after, 1)):
                if segment is not None:
                    deltas[segment] += step
                    self.moves[segment] += 1
        self.metrics.segment_changes.inc(len(changes))
        return {s: d for s, d in deltas.items() if d}

    def _publish_segment_figures(self, snapshot: SegmentSnapshot) -> None:
        """Users per segment and volatility over the window since the previous snapshot."""
        sizes = self.state_store.segment_sizes(self.owned)
        for segment in self._labelled_segments - set(snapshot.segment_ids):
            self.metrics.segment_users.remove(str(segment))  # retired: drop its series
            self.metrics.segment_volatility.remove(str(segment))
        for segment in snapshot.segment_ids:
            size = sizes.get(segment, 0)
            self.metrics.segment_users.labels(segment=str(segment)).set(size)
            self.metrics.segment_volatility.labels(segment=str(segment)).set(
                self.moves.get(segment, 0) / size if size else 0.0)
        self._labelled_segments = set(snapshot.segment_ids)
        self.moves.clear()

    def _train(self, vectors: list[dict[str, float]], labels: list[Label]) -> None:
        if self.learning.learn(vectors, labels) and self.snapshot is not None:
            self._publish_segment_figures(self.snapshot)

    def _with_retries(self, what: str, action: Callable[[], T]) -> T:
        attempt = 0
        while True:
            try:
                return action()
            except DependencyError as exc:
                attempt += 1
                self.metrics.failed(what, exc)
                if attempt >= self.config.retry_attempts:
                    log.error("%s failed %d times, giving up: %s", what, attempt, exc)
                    raise
                delay = min(0.5 * 2 ** (attempt - 1), 10.0)
                log.warning("%s failed (%s); retry %d in %.1f s", what, exc, attempt, delay)
                self.sleep(delay)
