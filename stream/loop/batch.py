"""One pass of the loop: the records of a polled batch decoded per partition (step 2), or a
sweep of due users with no records."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from operators.decoding import decode_event
from operators.events import Event, EventLimits, Rejected
from stream.loop.outputs import Outputs, Topics
from stream.metrics import INVALID_TYPE
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
    sources = batch.sources
    for partition, part in _by_partition(records).items():
        batch.first_offsets[partition] = part[0].offset
        batch.next_offsets[partition] = part[-1].offset + 1
        outputs = batch.outputs[partition] = Outputs(topics, now_ms)
        events = batch.events[partition]
        types: list[str] = []
        for record in part:
            # An event may not be ahead of when it was produced, nor of our own clock.
            stamp = record.timestamp_ms
            received_ms = (stamp if stamp < now_ms else now_ms) if stamp > 0 else None
            decoded = decode_event(record.key, record.value, limits, received_ms)
            if isinstance(decoded, Rejected):
                outputs.dead_letter(record, decoded)
                types.append(INVALID_TYPE)
            else:
                events.append(decoded)
                sources[id(decoded)] = record
                types.append(decoded.type)
        consumed = outputs.tally.consumed
        for kind, count in Counter(types).items():
            consumed[partition.topic, kind] += count
    return batch


def _by_partition(records: list[Record]) -> dict[Partition, list[Record]]:
    """The records of each partition, in order (a poll returns them grouped already)."""
    parts: dict[Partition, list[Record]] = {}
    start = 0
    for i in range(1, len(records) + 1):
        if i < len(records):
            here, first = records[i].partition, records[start].partition
            if here is first or here == first:
                continue
        parts.setdefault(records[start].partition, []).extend(records[start:i])
        start = i
    return parts
