from __future__ import annotations

import itertools
import json
import math
import os
import pickle
import random
import subprocess
import sys

from operators.decoding import decode_event
from operators.events import Event
from operators.features import UserState, features_at, update_features
from operators.segments import SegmentSnapshot, predict_many
from stream.feeds.simulator import encode, generate_events
from stream.models.kmeans import lloyd, nearest
from stream.models.segment_trainer import SegmentTrainer

FEATURES = ("recency_days", "frequency", "monetary", "views_30d")
BLOBS = ((0.5, 0.5, 2.0), (3.0, 1.5, 5.0), (4.5, 0.2, 0.5), (1.0, 2.5, 7.0))


def sample_vectors(n: int) -> list[dict[str, float]]:
    states: dict[str, UserState] = {}
    vectors = []
    for raw in itertools.islice(generate_events(300, seed=2), n):
        event = decode_event(*encode(raw))
        assert isinstance(event, Event)
        state = update_features(states.get(event.user_id), event)
        states[event.user_id] = state
        every = features_at(state, event.ts_ms)
        vectors.append({name: every[name] for name in FEATURES})
    return vectors


def blob_vectors(
    n: int,
    seed: int,
    blobs: tuple[tuple[float, ...], ...] = BLOBS,
) -> list[dict[str, float]]:
    """Points around ``blobs`` in log1p space, as raw feature values."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        center = rng.choice(blobs)
        out.append(
            {
                name: math.expm1(max(c + rng.gauss(0, 0.25), 0.0))
                for name, c in zip(("a", "b", "c"), center, strict=True)
            }
        )
    return out


def cost(snapshot: SegmentSnapshot, vectors: list[dict[str, float]]) -> float:
    from operators.segments import standardize

    return sum(
        min(math.dist(standardize(snapshot, v), c) ** 2 for c in snapshot.centers) for v in vectors
    )


def test_snapshot_scores_like_the_model() -> None:
    trainer = SegmentTrainer(FEATURES, 4, snapshot_every=1000, seed=1, warmup=500)
    vectors = sample_vectors(4000)
    for vector in vectors[:3000]:
        trainer.learn_one(vector)
    assert trainer.due()
    snapshot, lineage = trainer.snapshot()
    assert snapshot.version == 1 and len(snapshot.centers) == 4
    assert lineage.created == snapshot.segment_ids == (0, 1, 2, 3)
    model = trainer.model
    predicted = predict_many(snapshot, vectors[3000:])
    for vector, segment in zip(vectors[3000:], predicted, strict=True):
        x = tuple(math.log1p(vector[f]) for f in FEATURES)
        index = nearest(model.centers(), model.standardize(x))[0]
        assert segment == snapshot.segment_ids[index]
    # Exported as plain data: it survives JSON, hence any River upgrade.
    assert SegmentSnapshot.from_dict(json.loads(json.dumps(snapshot.to_dict()))) == snapshot


def test_versions_increase_and_snapshots_wait_for_warmup_and_enough_samples() -> None:
    trainer = SegmentTrainer(FEATURES, 3, snapshot_every=500, seed=1, warmup=800)
    vectors = sample_vectors(2000)
    for vector in vectors[:799]:
        trainer.learn_one(vector)
    assert not trainer.due()  # not warm yet, although 799 > 500
    for vector in vectors[799:1000]:
        trainer.learn_one(vector)
    assert trainer.due()
    assert trainer.snapshot()[0].version == 1
    assert not trainer.due()
    for vector in vectors[1000:1500]:
        trainer.learn_one(vector)
    assert trainer.snapshot()[0].version == 2


def test_the_first_snapshot_comes_after_the_warmup_not_a_full_period() -> None:
    trainer = SegmentTrainer(FEATURES, 4, snapshot_every=10_000, seed=1)  # warm-up: 1,000
    vectors = sample_vectors(3000)
    for vector in vectors[:999]:
        trainer.learn_one(vector)
    assert not trainer.due()
    trainer.learn_one(vectors[999])
    assert trainer.due()  # a new deployment gets segments now...
    assert trainer.snapshot()[0].version == 1
    for vector in vectors[1000:]:
        trainer.learn_one(vector)
    assert not trainer.due()  # ...and the next model after the regular period


def test_reaches_the_offline_kmeans_cost_on_separated_clusters() -> None:
    trainer = SegmentTrainer(("a", "b", "c"), 4, snapshot_every=1000, seed=3, warmup=500)
    for vector in blob_vectors(20_000, seed=4):
        trainer.learn_one(vector)
    snapshot, _ = trainer.snapshot()
    held_out = blob_vectors(2000, seed=5)
    # Offline reference: Lloyd's algorithm from the true blob centers, same scaling.
    from operators.segments import standardize

    points = [standardize(snapshot, v) for v in held_out]
    truth = [
        tuple((c - m) / s for c, m, s in zip(b, snapshot.means, snapshot.stds, strict=True))
        for b in BLOBS
    ]
    offline_centers, _ = lloyd(points, truth, 50)
    offline = sum(min(math.dist(p, c) ** 2 for c in offline_centers) for p in points)
    assert cost(snapshot, held_out) <= 1.05 * offline


def test_stationary_stream_keeps_ids_and_creates_nothing_after_the_first_snapshot() -> None:
    trainer = SegmentTrainer(("a", "b", "c"), 4, snapshot_every=2000, seed=3, warmup=500)
    stream = blob_vectors(20_000, seed=6)
    lineages = []
    for vector in stream:
        trainer.learn_one(vector)
        if trainer.due():
            lineages.append(trainer.snapshot()[1])
    assert len(lineages) >= 8
    assert all(
        lin.ids == (0, 1, 2, 3) and not lin.created and not lin.retired for lin in lineages[1:]
    )


def test_a_dead_center_is_reseeded_where_the_data_went() -> None:
    trainer = SegmentTrainer(("a", "b", "c"), 4, snapshot_every=1000, seed=3, warmup=500)
    for vector in blob_vectors(5000, seed=7):
        trainer.learn_one(vector)
    # One behaviour disappears and a new one appears far away.
    moved = (BLOBS[0], BLOBS[1], BLOBS[2], (6.0, 3.5, 1.0))
    for vector in blob_vectors(30_000, seed=8, blobs=moved):
        trainer.learn_one(vector)
    snapshot, _ = trainer.snapshot()
    from operators.segments import standardize

    new_blob = standardize(
        snapshot, {n: math.expm1(v) for n, v in zip("abc", moved[3], strict=True)}
    )
    assert min(math.dist(new_blob, c) for c in snapshot.centers) < 0.5


def test_the_same_samples_give_the_same_model_under_any_hash_seed() -> None:
    script = (
        "import json, itertools\n"
        "from tests.stream.test_trainer import sample_vectors, FEATURES\n"
        "from stream.models.segment_trainer import SegmentTrainer\n"
        "t = SegmentTrainer(FEATURES, 4, snapshot_every=500, seed=9, warmup=300)\n"
        "for v in sample_vectors(2500): t.learn_one(v)\n"
        "print(json.dumps(t.snapshot()[0].to_dict()))\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(outputs) == 1


def test_the_trainer_survives_a_dump_and_restore_and_rejects_garbage() -> None:
    trainer = SegmentTrainer(FEATURES, 4, snapshot_every=100, seed=1, warmup=200)
    for vector in sample_vectors(500):
        trainer.learn_one(vector)
    restored = SegmentTrainer.restore(trainer.dump())
    assert restored is not None and restored.samples == 500
    assert restored.snapshot() == trainer.snapshot()
    assert SegmentTrainer.restore(b"not a pickle") is None
    assert SegmentTrainer.restore(None) is None


def test_a_restored_trainer_learns_on_exactly_as_the_original() -> None:
    trainer = SegmentTrainer(FEATURES, 4, snapshot_every=100, seed=1, warmup=200)
    vectors = sample_vectors(900)
    for vector in vectors[:450]:
        trainer.learn_one(vector)
    restored = SegmentTrainer.restore(trainer.dump())
    assert restored is not None
    for vector in vectors[450:]:
        trainer.learn_one(vector)
        restored.learn_one(vector)
    assert restored.snapshot() == trainer.snapshot()


class _Exploit:
    ran = False

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (setattr, (_Exploit, "ran", True))


def test_trainer_state_is_data_never_unpickled() -> None:
    assert json.loads(SegmentTrainer(FEATURES, 4).dump())["format"] == "segstream.segment-trainer"
    assert SegmentTrainer.restore(pickle.dumps(_Exploit())) is None
    assert not _Exploit.ran
    newer = json.loads(SegmentTrainer(FEATURES, 4).dump()) | {"version": 99}
    assert SegmentTrainer.restore(json.dumps(newer).encode()) is None  # a clear warning
