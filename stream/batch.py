"""One pass of the loop: the records of a polled batch decoded per partition (step 2), or a
sweep of due users with no records."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from operators.decoding import decode_event
from operators.events import Event, EventLimits, Rejected
from stream.metrics import INVALID_TYPE
from stream.outputs import Outputs, Topics
from stream.ports import Partition, Record


@dataclass(slots=True)
class Batch:
    """One pass of the loop over some partitions: a polled batch, or a sweep of due users."""

    now_ms: int
    first_offsets: dict[Partition, int] = field(default_factory=dict)
    next_offsets: dict[Partition, int] = field(default_factory=dict)
    events: defaultdict[Partition, list[Event]] = field(default_factory=lambda: defaultdict(list))
    sources: dict[int, Record] = field(default_factory=dict)  # id(event) -> its record
    outputs: dict[Partition, Outputs] = field(default_factory=dict)
    until_ms: dict[Partition, int] = field(default_factory=dict)  # forced watermark (a sweep)
    reassign: dict[Partition, list[str]] = field(default_factory=dict)  # users to move now


def decode_records(
    records: list[Record], limits: EventLimits, topics: Topics, now_ms: int
) -> Batch:
    """Events per partition, in order; rejects become dead letters of their partition."""
    batch = Batch(now_ms)
    for record in records:
        partition = record.partition
        batch.first_offsets.setdefault(partition, record.offset)
        batch.next_offsets[partition] = record.offset + 1
        outputs = batch.outputs.get(partition)
        if outputs is None:
            outputs = batch.outputs[partition] = Outputs(topics, now_ms)
        # An event may not be ahead of when it was produced, nor of our own clock.
        received_ms = min(record.timestamp_ms, now_ms) if record.timestamp_ms > 0 else None
        decoded = decode_event(record.key, record.value, limits, received_ms)
        if isinstance(decoded, Rejected):
            outputs.dead_letter(record, decoded)
            outputs.tally.consumed[partition.topic, INVALID_TYPE] += 1
        else:
            batch.events[partition].append(decoded)
            batch.sources[id(decoded)] = record
            outputs.tally.consumed[partition.topic, decoded.type] += 1
    return batch
