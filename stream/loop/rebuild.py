"""Rebuilding after a state loss without publishing anything twice or going backwards.

Redis holds the offsets we resume from; the broker holds a second copy (committed after each
save) that outlives Redis. Normally the broker's offset is at or behind Redis's. When it is
ahead (Redis restarted empty, or was restored from an old backup), state was lost: the
partition is rebuilt from the offset Redis has (the start of the log if none), and

- below the broker's offset, whose outputs were published before the loss, the rebuild
  publishes nothing, counts nothing and trains nothing: it only recomputes state;
- the partition's *epoch* goes up by one, and is committed to the broker before anything
  else. Published ``seq`` numbers carry it in their high 32 bits, so every change a user gets
  after a rebuild has a higher ``seq`` than every change they got before it, whatever the
  rebuilt counters say.

The commit note also carries the model version in use: a floor that keeps versions rising
even if every process died with the store (see ``Publisher.keep_versions_above``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from stream.errors import DependencyError
from stream.ports import Committed, EventSource, Partition, Record

log = logging.getLogger(__name__)
EPOCH_SHIFT = 32  # seq = epoch << 32 | the user's change counter (a u32 in the record)


def notes_model_version(committed: Mapping[Partition, Committed]) -> int:
    """The highest model version the broker's commit notes know of, over every partition of
    the topic (the trainer's partitions carry the newest)."""
    return max((Note.decode(c.metadata).model_version for c in committed.values()), default=0)


@dataclass(frozen=True, slots=True)
class Note:
    """What the broker keeps beside a partition's committed offset."""

    epoch: int = 0
    model_version: int = 0
    rebuilding: bool = False  # nothing published under ``epoch`` yet: a rebuild is under way

    def encode(self) -> str:
        doc = {"epoch": self.epoch, "model": self.model_version}
        if self.rebuilding:
            doc["rebuilding"] = 1
        return json.dumps(doc, separators=(",", ":"))

    @staticmethod
    def decode(text: str) -> Note:
        """An unreadable or empty note (a commit by another tool) reads as epoch 0."""
        try:
            doc = json.loads(text)
            return Note(int(doc["epoch"]), int(doc["model"]), bool(doc.get("rebuilding")))
        except (ValueError, KeyError, TypeError, AttributeError):
            return Note()


@dataclass(slots=True)
class Rebuilds:
    epochs: dict[Partition, int] = field(default_factory=dict)
    committed: dict[Partition, int] = field(default_factory=dict)  # our last commits
    # Partitions being rebuilt: the broker's offset, below which outputs were published.
    until: dict[Partition, int] = field(default_factory=dict)

    def assigned(
        self, source: EventSource, resume: Mapping[Partition, int | None], model_version: int
    ) -> int:
        """Compare Redis's offsets (``resume``) with the broker's; start the rebuilds. Returns
        the highest model version the broker's notes know of."""
        committed: dict[Partition, Committed] = source.committed()
        floor = notes_model_version(committed)
        raised = {}
        for partition, stored in resume.items():
            last = committed.get(partition)
            note = Note.decode(last.metadata) if last else Note()
            self.until.pop(partition, None)
            self.epochs[partition] = note.epoch
            if last is not None and (stored is None or stored < last.offset):
                self.until[partition] = last.offset
                if note.rebuilding:  # taken over mid-rebuild: nothing published under it yet
                    log.warning(
                        "resuming the rebuild of %s at %s, quiet up to offset %d (epoch %d)",
                        partition,
                        "the start" if stored is None else stored,
                        last.offset,
                        note.epoch,
                    )
                    continue
                self.epochs[partition] = note.epoch + 1
                raised[partition] = last.offset
                log.warning(
                    "STATE LOST for %s: the store resumes at %s but outputs were "
                    "published up to offset %d; rebuilding without publishing up to "
                    "there, then publishing under epoch %d",
                    partition,
                    "the start" if stored is None else stored,
                    last.offset,
                    note.epoch + 1,
                )
        # The new epoch is durable before anything is published under it.
        if raised and not source.commit(raised, self.notes(raised, max(floor, model_version))):
            raise DependencyError(f"kafka: could not record the new epoch of {sorted(raised)}")
        return floor

    def revoked(self, partitions: Collection[Partition]) -> None:
        for partition in partitions:
            self.until.pop(partition, None)
            self.epochs.pop(partition, None)
            self.committed.pop(partition, None)

    def note_model(self, source: EventSource, model_version: int) -> None:
        """A new model was published: note its version on our partitions now, not at the next
        commit, so a store loss in between cannot lower the floor."""
        if self.committed:
            source.commit(self.committed, self.notes(self.committed, model_version))

    def quiet(self, partition: Partition, next_offset: int) -> bool:
        """True while a batch ending at ``next_offset`` is all below the published offset."""
        until = self.until.get(partition)
        return until is not None and next_offset <= until

    def seq_base(self, partition: Partition) -> int:
        return self.epochs.get(partition, 0) << EPOCH_SHIFT

    def split(self, records: list[Record]) -> list[list[Record]]:
        """``records`` as one batch, or two when a rebuilt partition reaches its published
        offset in it: a batch is either all quiet or all published, per partition."""
        if not self.until:
            return [records]
        first = [
            r
            for r in records
            if r.partition not in self.until or r.offset < self.until[r.partition]
        ]
        if len(first) == len(records) or not first:
            return [records]
        rest = [
            r for r in records if r.partition in self.until and r.offset >= self.until[r.partition]
        ]
        return [first, rest]

    def saved(self, next_offsets: Mapping[Partition, int]) -> dict[Partition, int]:
        """The offsets to commit after a save: none below a rebuild's published offset (the
        broker's copy must not go back)."""
        out = {}
        for partition, offset in next_offsets.items():
            until = self.until.get(partition)
            if until is not None and offset < until:
                continue
            if until is not None:
                del self.until[partition]
                log.warning(
                    "rebuilt %s up to offset %d: publishing again (epoch %d)",
                    partition,
                    until,
                    self.epochs.get(partition, 0),
                )
            out[partition] = offset
        self.committed.update(out)
        return out

    def notes(self, partitions: Collection[Partition], model_version: int) -> dict[Partition, str]:
        return {
            p: Note(self.epochs.get(p, 0), model_version, p in self.until).encode()
            for p in partitions
        }
