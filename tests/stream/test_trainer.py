from __future__ import annotations

import itertools
import json

from operators.events import Event, decode_event
from operators.features import features_at, update_features
from operators.segments import SegmentSnapshot, assign_segment
from stream.generator import encode, generate_events
from stream.trainer import SegmentTrainer

FEATURES = ("recency_days", "frequency", "monetary", "views_30d")


def sample_vectors(n: int) -> list[dict[str, float]]:
    states: dict[str, object] = {}
    vectors = []
    for raw in itertools.islice(generate_events(300, seed=2), n):
        event = decode_event(*encode(raw))
        assert isinstance(event, Event)
        state = update_features(states.get(event.user_id), event)  # type: ignore[arg-type]
        states[event.user_id] = state
        every = features_at(state, event.ts_ms)
        vectors.append({name: every[name] for name in FEATURES})
    return vectors


def test_snapshot_scores_exactly_like_the_river_model() -> None:
    trainer = SegmentTrainer(FEATURES, 4, snapshot_every=1000, seed=1)
    vectors = sample_vectors(4000)
    for vector in vectors[:3000]:
        trainer.learn(vector)
    assert trainer.due()
    snapshot = trainer.snapshot()
    assert snapshot.version == 1 and len(snapshot.centers) == 4
    for vector in vectors[3000:]:
        assert assign_segment(snapshot, vector) == trainer.predict(vector)
    # Exported as plain data: it survives JSON, hence any River upgrade.
    assert SegmentSnapshot.from_dict(json.loads(json.dumps(snapshot.to_dict()))) == snapshot


def test_versions_increase_and_snapshots_wait_for_enough_samples() -> None:
    trainer = SegmentTrainer(FEATURES, 3, snapshot_every=500, seed=1)
    vectors = sample_vectors(1200)
    for vector in vectors[:499]:
        trainer.learn(vector)
    assert not trainer.due()
    for vector in vectors[499:1000]:
        trainer.learn(vector)
    assert trainer.due()
    assert trainer.snapshot().version == 1
    assert not trainer.due()


def test_the_trainer_survives_a_dump_and_restore_and_rejects_garbage() -> None:
    trainer = SegmentTrainer(FEATURES, 4, snapshot_every=100, seed=1)
    for vector in sample_vectors(500):
        trainer.learn(vector)
    restored = SegmentTrainer.restore(trainer.dump())
    assert restored is not None and restored.samples == 500
    assert restored.snapshot() == trainer.snapshot()
    assert SegmentTrainer.restore(b"not a pickle") is None
    assert SegmentTrainer.restore(None) is None
