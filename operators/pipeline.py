"""The per-batch transition: user states and events in; new states, changes and samples out.

This is the one place to read what happens to an event after decoding:
drop a redelivered duplicate → ``update_features`` → ``features_at`` → ``assign_segment``
→ emit ``SegmentChanged`` when the segment moved → offer the feature vector to the trainer.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from operators.changes import SegmentChanged, segment_changed
from operators.events import Event
from operators.features import (
    NO_SEGMENT,
    UserState,
    event_digest,
    features_at,
    update_features,
)
from operators.segments import SegmentSnapshot, assign_segment


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    segment_features: tuple[str, ...]  # the features the trainer learns segments from
    train_sample_permille: int  # share of events whose feature vector trains the model, in ‰


@dataclass(slots=True)
class BatchOutcome:
    states: dict[str, UserState] = field(default_factory=dict)  # only users that changed
    changes: list[SegmentChanged] = field(default_factory=list)
    training_vectors: list[dict[str, float]] = field(default_factory=list)
    processed_by_type: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0


def process_events(
    states: Mapping[str, UserState | None],
    events: Iterable[Event],
    snapshot: SegmentSnapshot | None,
    config: PipelineConfig,
) -> BatchOutcome:
    """Apply ``events`` in order to ``states``. Pure: the inputs are left untouched."""
    out = BatchOutcome()
    for event in events:
        before = out.states.get(event.user_id) or states.get(event.user_id)
        digest = event_digest(event.event_id)
        if before is not None and digest in before.recent_event_ids:
            out.duplicates += 1  # a redelivery or a producer retry
            continue
        state = update_features(before, event, digest)
        every = features_at(state, event.ts_ms)
        features = {name: every[name] for name in config.segment_features}
        segment = assign_segment(snapshot, features)
        if snapshot is not None and segment != NO_SEGMENT and segment != state.segment:
            out.changes.append(
                segment_changed(
                    user_id=event.user_id, seq=state.seq + 1, before=state.segment,
                    after=segment, model_version=snapshot.version, event_id=event.event_id,
                    event_time_ms=event.ts_ms, features=features,
                )
            )
            state = replace(state, segment=segment, seq=state.seq + 1)
        out.states[event.user_id] = state
        out.processed_by_type[event.type] += 1
        # Sampling by event-id digest keeps the training sample the same across replays.
        if digest % 1000 < config.train_sample_permille:
            out.training_vectors.append(features)
    return out
