"""The models' writer: feeds samples and labels to the trainers and publishes frozen models.

One process trains at a time: the holder of the trainer lease in the model store. It learns
from the sampled users of the partitions it owns (partitions split users by a hash of their
id, so that is a uniform sample of users) and publishes segment snapshots (with their lineage
events) on the segment trainer's schedule and tag models every ``tag_export_every`` labels,
with the trainers' state to resume from. Every other process only scores: it reloads the
published models when it renews its view of the lease. When the trainer dies its lease
expires and another process takes over from the last published state.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from operators.changes import lineage_events, republished_event
from operators.columns import Matrix
from operators.labels import Label
from operators.matching import lineage_records
from operators.segments import SegmentSnapshot, segment_names
from operators.tags import TagDefinition, TagModel, usable_models
from stream.errors import DependencyError
from stream.metrics import ModelMetrics
from stream.models.segment_trainer import SegmentTrainer
from stream.models.tag_trainer import TagTrainer, dump_tag_trainers, restore_tag_trainers
from stream.ports import Clock, ModelStore, Sink

log = logging.getLogger(__name__)


def compatible(snapshot: SegmentSnapshot, features: Sequence[str]) -> bool:
    """The one compatibility rule: a published segment model scores users, and seeds a new
    trainer, only where it was built on the configured segment features (a process started
    with other ``SEGSTREAM_SEGMENT_FEATURES`` waits for a model of its own)."""
    return tuple(snapshot.features) == tuple(features)


def resume(
    snapshot: SegmentSnapshot | None,
    trainer_state: bytes | None,
    *,
    features: tuple[str, ...],
    segments: int,
    snapshot_every: int,
    seed: int,
) -> tuple[SegmentSnapshot | None, SegmentTrainer]:
    """What a starting process scores with and trains, from what the model store holds: the
    stored trainer if it has the configured shape, else a new one that continues the stored
    model's versions and segment ids; the stored snapshot if it is ``compatible``."""
    trainer = SegmentTrainer.restore(trainer_state)
    if trainer is None or (trainer.n_segments, trainer.features) != (segments, features):
        trainer = SegmentTrainer(features, segments, snapshot_every=snapshot_every, seed=seed)
        if snapshot is not None and compatible(snapshot, features):
            trainer.version = snapshot.version  # keep versions increasing across restarts
            trainer.previous = snapshot  # and segment ids stable
    if snapshot is not None and not compatible(snapshot, features):
        log.warning(
            "stored segment model v%d uses other features; waiting for a new one", snapshot.version
        )
        snapshot = None
    if snapshot is not None:
        log.info("scoring with stored segment model v%d", snapshot.version)
    return snapshot, trainer


class Publisher:
    def __init__(
        self,
        *,
        trainer: SegmentTrainer | None,
        tags: tuple[TagDefinition, ...],
        model_store: ModelStore,
        sink: Sink,
        metrics: ModelMetrics,
        clock: Clock,
        output_topic: str,
        snapshot: SegmentSnapshot | None,
        tag_models: Mapping[str, TagModel],
        tag_export_every: int = 500,
        lease_ms: int = 30_000,
        first_model_wait_s: float = 60.0,
        training: bool = True,
        broker_version: Callable[[], int] = lambda: 0,
    ) -> None:
        self.trainer = trainer
        self.tags = tags
        self.tag_trainers = {i: TagTrainer(t) for i, t in enumerate(tags) if t.kind == "predictive"}
        self.model_store = model_store
        self.sink = sink
        self.metrics = metrics
        self.clock = clock
        self.output_topic = output_topic
        self.snapshot = snapshot
        self.tag_models = dict(tag_models)
        self.tag_export_every = tag_export_every
        self.labels_since_export = 0
        self.lease_ms = lease_ms
        self.first_model_wait_s = first_model_wait_s
        self._first_sample_s: float | None = None  # when this trainer had its first sample
        self.training = training  # False: the published models are frozen; only follow them
        # The highest model version the broker's commit notes know of (they outlive Redis).
        self.broker_version = broker_version
        self.token = uuid.uuid4().hex
        self.leading = False
        self.version_floor = 0  # the highest version the broker's commit notes know of
        self._next_check_s = float("-inf")
        self.names: dict[int, str] = {}  # each segment's name, for change events
        self._names_from: tuple[int, dict[int, str]] | None = None  # (model version, analysts')

    def learn_many(self, vectors: Matrix, labels: list[Label]) -> bool:
        """Learn and publish what is due, if this process trains; else follow the published
        models. True when the segment snapshot in use changed. ``vectors``: a row per sample,
        the segment features in the trainer's order (the settings', as the pipeline's)."""
        changed = self._check_lease()
        if not self.leading:
            return changed
        for label in labels:
            learner = self.tag_trainers.get(label.tag)
            if learner is not None:
                drifts = learner.drifts
                learner.learn_one(label.logs, label.value)
                if learner.drifts > drifts:
                    self.metrics.drift_detections.labels(tag=learner.tag.name).inc()
                self.metrics.labels_resolved.labels(
                    tag=learner.tag.name, value=str(label.value)
                ).inc()
        self.labels_since_export += len(labels)
        if self.tag_trainers and self.labels_since_export >= self.tag_export_every:
            self._publish_tags()
        if self.trainer is None:
            return changed
        self.trainer.learn_many(vectors)
        self._warm_start_if_waited()
        if not self.trainer.due():
            return changed
        snapshot, lineage = self.trainer.snapshot()
        # Lineage first: re-done after a crash, it repeats the same change ids.
        now_ms = int(self.clock.time_s() * 1000)
        for key, value in lineage_events(lineage, snapshot, now_ms):
            self.sink.send(self.output_topic, key, value)
        self.sink.flush()
        self.model_store.save(snapshot, self.trainer.dump())
        known = self.model_store.load_lineage()
        self.model_store.save_lineage(lineage_records(known, lineage, snapshot.version))
        self.metrics.observe_shift(self.snapshot, snapshot)
        self.snapshot = snapshot
        self.refresh_names()
        self.metrics.model_snapshots.inc()
        self.metrics.set_model_version(snapshot.version)
        log.info(
            "published segment model v%d after %d samples (segments %s; created %s, "
            "retired %s, merged %s)",
            snapshot.version,
            self.trainer.samples,
            list(snapshot.segment_ids),
            list(lineage.created),
            list(lineage.retired),
            list(lineage.merged),
        )
        return True

    def _warm_start_if_waited(self) -> None:
        """A deployment with no model yet gets one after ``first_model_wait_s`` of training,
        from fewer samples than the warm-up's if the stream is slow (a replay fills the warm-up
        in seconds and never gets here)."""
        trainer = self.trainer
        if trainer is None or trainer.model.ready or trainer.version or not trainer.samples:
            return
        now = self.clock.time_s()
        if self._first_sample_s is None:
            self._first_sample_s = now
        elif now - self._first_sample_s >= self.first_model_wait_s:
            trainer.warm_start_early()

    def _check_lease(self) -> bool:
        """Renew the lease (a third of its length apart); take over or follow. True when the
        segment snapshot in use changed."""
        now = self.clock.time_s()
        if now < self._next_check_s:
            return False
        self._next_check_s = now + self.lease_ms / 3000
        leading = self.training and self.model_store.hold_trainer_lease(self.token, self.lease_ms)
        taking_over = leading and not self.leading
        self.leading = leading
        self.metrics.trainer.set(1 if leading else 0)
        if not leading:
            changed = self._follow()
        else:
            published = self.model_store.load_snapshot()
            changed = False
            if taking_over or (published is not None and published.version > self.version):
                changed = self._take_over()  # ...or adopt a model imported meanwhile
            self._republish_if_lost()
        self.refresh_names()
        return changed

    def refresh_names(self) -> None:
        """Reload the analysts' segment names; rename the segments if they or the model
        changed."""
        source = (self.version, self.model_store.load_segment_names())
        if source != self._names_from:
            self._names_from = source
            self.names = segment_names(self.snapshot, source[1])
            self.metrics.segment_names(self.names)

    def keep_model(self) -> None:
        """The state store lost data: if it lost the model too, publish ours again, best effort
        (the process is about to exit; its successor must not start from version 0)."""
        try:
            if self.leading or (
                self.training and self.model_store.hold_trainer_lease(self.token, self.lease_ms)
            ):
                self.leading = True
                self._republish_if_lost()
        except DependencyError as exc:
            log.error("could not republish the segment model: %s", exc)

    @property
    def version(self) -> int:
        """The highest model version this process published or scores with."""
        trainer = self.trainer.version if self.trainer is not None else 0
        return max(trainer, self.snapshot.version if self.snapshot is not None else 0)

    def keep_versions_above(self, floor: int) -> None:
        """``floor``: the highest model version the broker's commit notes know of. A trainer
        that starts from nothing (the store lost the model and no process kept it) publishes
        above it, so versions never go backwards."""
        self.version_floor = max(self.version_floor, floor)
        if self.trainer is not None and self.trainer.version < floor:
            log.warning(
                "the model store is behind version %d (lost?): the next model published "
                "will be v%d",
                floor,
                floor + 1,
            )
            self.trainer.version = floor

    def _republish_if_lost(self) -> None:
        """Versions never go backwards: a model the store lost is republished one higher."""
        if self.snapshot is None or self.model_store.load_snapshot() is not None:
            return
        lost = self.snapshot
        # A follower may not have seen the newest models before the loss: the broker has.
        self.keep_versions_above(self.broker_version())
        version = (
            max(lost.version, self.version_floor, self.trainer.version if self.trainer else 0) + 1
        )
        again = replace(lost, version=version)
        now_ms = int(self.clock.time_s() * 1000)
        self.sink.send(self.output_topic, b"model", republished_event(again, lost.version, now_ms))
        self.sink.flush()
        if self.trainer is not None:
            self.trainer.version, self.trainer.previous = version, again
        self.model_store.save(again, self.trainer.dump() if self.trainer else None)
        if self.tag_trainers:
            self._publish_tags()
        self.snapshot = again
        self.metrics.model_snapshots.inc()
        self.metrics.set_model_version(version)
        log.warning(
            "the state store had lost the segment model: republished v%d as v%d",
            lost.version,
            version,
        )

    def _take_over(self) -> bool:
        """Resume training from the state published with the last models, and score with
        them. True when the segment snapshot in use changed."""
        published, state = self.model_store.load()
        restored = SegmentTrainer.restore(state)
        if (
            restored is not None
            and self.trainer is not None
            and (restored.n_segments, restored.features)
            == (self.trainer.n_segments, self.trainer.features)
        ):
            self.trainer = restored
        elif (
            published is not None
            and self.trainer is not None
            and self.trainer.version < published.version
        ):
            # A model published without its trainer's state (an import): continue above it.
            self.trainer.version = published.version
            if compatible(published, self.trainer.features):
                self.trainer.previous = published
        saved = restore_tag_trainers(self.model_store.load_tag_trainers())
        for index, learner in self.tag_trainers.items():
            previous = saved.get(learner.tag.name)
            if previous is not None and previous.tag == learner.tag:
                self.tag_trainers[index] = previous
        log.info(
            "took the trainer lease: training from %d segment samples and %s tag labels",
            self.trainer.samples if self.trainer else 0,
            {learner.tag.name: learner.labels for learner in self.tag_trainers.values()},
        )
        if self.tag_trainers:
            self.tag_models = usable_models(self.model_store.load_tags(), self.tags)
        return self._use(published)

    def _use(self, snapshot: SegmentSnapshot | None) -> bool:
        """Score with ``snapshot`` if it is usable and not the one in use already."""
        if (
            snapshot is None
            or (self.trainer is not None and not compatible(snapshot, self.trainer.features))
            or (self.snapshot is not None and snapshot.version <= self.snapshot.version)
        ):
            return False
        self.snapshot = snapshot
        self.metrics.set_model_version(snapshot.version)
        log.info("scoring with segment model v%d, published by the trainer", snapshot.version)
        return True

    def _follow(self) -> bool:
        """Score with the models the trainer published last."""
        changed = self._use(self.model_store.load_snapshot())
        self.tag_models = usable_models(self.model_store.load_tags(), self.tags)
        return changed

    def _publish_tags(self) -> None:
        models = {learner.tag.name: learner.export() for learner in self.tag_trainers.values()}
        self.model_store.save_tags(models, dump_tag_trainers(self.tag_trainers.values()))
        self.tag_models = models
        self.labels_since_export = 0
        for name, model in models.items():
            if "auc" in model.metrics:  # absent until both outcomes have been seen
                self.metrics.tag_auc.labels(tag=name).set(model.metrics["auc"])
                self.metrics.tag_log_loss.labels(tag=name).set(model.metrics["log_loss"])
            self.metrics.tag_ready.labels(tag=name).set(1 if model.ready else 0)
        log.info("published tag models: %s", {n: dict(m.metrics) for n, m in models.items()})
