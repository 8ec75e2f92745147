"""What one partition's batch sends, and what it counts once it is saved.

The loop collects every record a batch publishes (change events, alerts, dead letters, late
events) in :class:`Outputs`, sends them all and flushes (a retry re-sends all of them: outputs
are at-least-once with deterministic ids), and only after the batch is saved adds its
:class:`Tally` to the metrics, so a retried or fenced batch is never counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from operators.changes import encode_alert, encode_change, encode_membership
from operators.erasure import audit_entry
from operators.events import PROCESSING_ERROR, Rejected
from operators.pipeline import BatchOutcome
from stream.loop.dead_letters import encode_dead_letter
from stream.metrics import Tally
from stream.ports import Record, Sink


@dataclass(frozen=True, slots=True)
class Topics:
    output: str
    dlq: str
    late: str
    alert: str
    membership: str
    dead_letter_max_bytes: int = 1_000_000


@dataclass(slots=True)
class Outputs:
    topics: Topics
    now_ms: int
    seq_base: int = 0  # the partition's epoch, as high bits of seq (stream.loop.rebuild)
    quiet: bool = False  # a rebuild below the published offset: tally only, nothing to send
    records: list[tuple[str, bytes | None, bytes | None]] = field(default_factory=list)
    audit: list[bytes] = field(default_factory=list)  # erasures applied, saved with the batch
    names: Mapping[int, str] = field(default_factory=dict)  # the segments' names, by id
    tally: Tally = field(default_factory=Tally)

    def dead_letter(self, record: Record, rejected: Rejected) -> None:
        self.tally.dead_lettered[rejected.reason] += 1
        if self.quiet:
            return
        self.records.append(
            (
                self.topics.dlq,
                record.key,
                encode_dead_letter(
                    record, rejected, self.now_ms, self.topics.dead_letter_max_bytes
                ),
            )
        )

    def outcome(self, outcome: BatchOutcome, sources: dict[int, Record]) -> None:
        """The changes, alerts, late and failed events of one partition's transition."""
        tally = self.tally
        publish = not self.quiet
        if self.seq_base:
            outcome.changes = [replace(c, seq=self.seq_base | c.seq) for c in outcome.changes]
        for change, tag in outcome.alerts:
            if publish:
                self.records.append(
                    (
                        self.topics.alert,
                        change.user_id.encode(),
                        encode_alert(change, tag, self.now_ms),
                    )
                )
            tally.alerts[tag] += 1
        for change in outcome.changes:
            if change.removed == "erased":  # audited even in a rebuild: the audit is state
                self.audit.append(audit_entry(change.event_id, change.request, self.now_ms))
                if change.held_nothing:
                    continue
            tally.changes += 1
            if publish:
                key = change.user_id.encode()
                value = encode_change(change, self.now_ms, self.names)
                self.records.append((self.topics.output, key, value))
                self.records.append((self.topics.membership, key, encode_membership(change)))
            if change.removed:
                tally.removed[change.removed] += 1
            for tag in change.tags_added:
                tally.tag_moves[tag, "enter"] += 1
            for tag in change.tags_removed:
                tally.tag_moves[tag, "exit"] += 1
            before, after = change.segment_before, change.segment_after
            if before == after:
                continue
            tally.segment_moves[
                "none" if before is None else str(before), "none" if after is None else str(after)
            ] += 1
            for segment, step in ((before, -1), (after, 1)):
                if segment is not None:
                    tally.segment_deltas[segment] += step
                    tally.segment_touches[segment] += 1
        for event, watermark in outcome.late if publish else ():
            record = sources[id(event)]
            late = Rejected(
                "late", f"event time {event.ts_ms} is before the partition's watermark {watermark}"
            )
            self.records.append(
                (
                    self.topics.late,
                    record.key,
                    encode_dead_letter(
                        record, late, self.now_ms, self.topics.dead_letter_max_bytes
                    ),
                )
            )
        for event, error in outcome.failed:
            self.dead_letter(
                sources[id(event)],
                Rejected(
                    PROCESSING_ERROR,
                    f"{error} while applying event {event.event_id!r} of user "
                    f"{event.user_id!r}; the user's state is as before it",
                ),
            )
        tally.late += len(outcome.late)
        tally.rescored += outcome.rescored
        tally.rescoring_errors += len(outcome.failed_rescorings)
        tally.processed.update(outcome.processed_by_type)
        tally.duplicates += outcome.duplicates

    def segment_deltas(self) -> dict[int, int]:
        return {s: d for s, d in self.tally.segment_deltas.items() if d}


def send_all(outputs: Iterable[Outputs], sink: Sink) -> None:
    """Send every partition's records and wait for the acknowledgements (all again on a
    retry)."""
    for output in outputs:
        for topic, key, value in output.records:
            sink.send(topic, key, value)
    sink.flush()
