"""The models' writer: feeds samples and labels to the trainers and publishes frozen models.

Segment snapshots (with their lineage events) are published by the segment trainer's own
schedule; tag models every ``tag_export_every`` labels. Scorers read only what was published.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from operators.changes import lineage_events
from operators.pipeline import Label
from operators.segments import SegmentSnapshot
from operators.tags import TagDefinition, TagModel
from stream.metrics import Metrics
from stream.ports import Clock, ModelStore, Sink
from stream.tag_trainer import TagLearner
from stream.trainer import SegmentTrainer

log = logging.getLogger(__name__)


class Learning:
    def __init__(
        self, *, trainer: SegmentTrainer | None, tags: tuple[TagDefinition, ...],
        model_store: ModelStore, sink: Sink, metrics: Metrics, clock: Clock, output_topic: str,
        snapshot: SegmentSnapshot | None, tag_models: Mapping[str, TagModel],
        tag_export_every: int = 500,
    ) -> None:
        self.trainer = trainer
        self.tags = tags
        self.learners = {i: TagLearner(t) for i, t in enumerate(tags) if t.kind == "predictive"}
        self.model_store = model_store
        self.sink = sink
        self.metrics = metrics
        self.clock = clock
        self.output_topic = output_topic
        self.snapshot = snapshot
        self.tag_models = dict(tag_models)
        self.tag_export_every = tag_export_every
        self.labels_since_export = 0

    def learn(self, vectors: list[dict[str, float]], labels: list[Label]) -> bool:
        """Learn; publish what is due. True when a new segment snapshot was published."""
        for label in labels:
            learner = self.learners.get(label.tag)
            if learner is not None:
                learner.learn(label.features, label.value)
                self.metrics.labels_resolved.labels(
                    tag=learner.tag.name, value=str(label.value)).inc()
        self.labels_since_export += len(labels)
        if self.learners and self.labels_since_export >= self.tag_export_every:
            self._publish_tags()
        if self.trainer is None:
            return False
        for vector in vectors:
            self.trainer.learn(vector)
        if not self.trainer.due():
            return False
        snapshot, lineage = self.trainer.snapshot()
        # Lineage first: re-done after a crash, it repeats the same change ids.
        now_ms = int(self.clock.time_s() * 1000)
        for key, value in lineage_events(lineage, snapshot, now_ms):
            self.sink.send(self.output_topic, key, value)
        self.sink.flush()
        self.model_store.save(snapshot, self.trainer.dump())
        self.snapshot = snapshot
        self.metrics.model_snapshots.inc()
        self.metrics.model_version.set(snapshot.version)
        log.info("published segment model v%d after %d samples (segments %s; created %s, "
                 "retired %s, merged %s)", snapshot.version, self.trainer.samples,
                 list(snapshot.segment_ids), list(lineage.created), list(lineage.retired),
                 list(lineage.merged))
        return True

    def _publish_tags(self) -> None:
        models = {learner.tag.name: learner.export() for learner in self.learners.values()}
        self.model_store.save_tags(models)
        self.tag_models = models
        self.labels_since_export = 0
        for name, model in models.items():
            for metric, value in model.metrics.items():
                if metric in ("auc", "log_loss"):
                    gauge = self.metrics.tag_auc if metric == "auc" else self.metrics.tag_log_loss
                    gauge.labels(tag=name).set(value)
            self.metrics.tag_ready.labels(tag=name).set(1 if model.ready else 0)
        log.info("published tag models: %s", {n: dict(m.metrics) for n, m in models.items()})
