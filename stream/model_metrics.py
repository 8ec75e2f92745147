"""The models' metrics: segment model versions and snapshots, segment sizes and movement,
predictive tags' quality and drift. The base of ``stream.partition_metrics.PartitionMetrics``
(and so of ``stream.metrics.Metrics``)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from contextlib import suppress

from prometheus_client import CollectorRegistry, Counter, Gauge

from operators.segments import SegmentSnapshot


class ModelMetrics:
    def __init__(self, registry: CollectorRegistry, predictive_tags: Sequence[str]) -> None:
        self.centroid_shift = Gauge(
            "segstream_segment_centroid_shift",
            "Distance (log1p units) each segment's center moved at the last snapshot.",
            ["segment"],
            registry=registry,
        )
        self.drift_detections = Counter(
            "segstream_drift_detections",
            "Changes in a predictive tag's error rate detected by ADWIN on its labels.",
            ["tag"],
            registry=registry,
        )
        self.labels_resolved = Counter(
            "segstream_labels_resolved",
            "Delayed labels of predictive tags resolved (value 1: the outcome happened).",
            ["tag", "value"],
            registry=registry,
        )
        self.tag_auc = Gauge(
            "segstream_tag_auc",
            "Exact ROC AUC of each predictive tag, prequential, over its last 5000 labels.",
            ["tag"],
            registry=registry,
        )
        self.tag_log_loss = Gauge(
            "segstream_tag_log_loss",
            "Log-loss of each predictive tag, prequential, over its last 5000 labels.",
            ["tag"],
            registry=registry,
        )
        self.tag_ready = Gauge(
            "segstream_tag_ready",
            "1 once a predictive tag has enough labels to score users, else 0.",
            ["tag"],
            registry=registry,
        )
        self.segment_users = Gauge(
            "segstream_segment_users",
            "Users per segment in this consumer's partitions, updated at each model snapshot.",
            ["segment"],
            registry=registry,
        )
        self.segment_info = Gauge(
            "segstream_segment_info",
            "Always 1: each segment of the model in use, with its name (an analyst's, else the "
            "generated one), to join on segment in dashboards.",
            ["segment", "name"],
            registry=registry,
        )
        self.segment_volatility = Gauge(
            "segstream_segment_volatility",
            "(Enters + exits) / users of each segment over the last snapshot window.",
            ["segment"],
            registry=registry,
        )
        self.model_snapshots = Counter(
            "segstream_model_snapshots_published",
            "Segment model snapshots published.",
            registry=registry,
        )
        self.model_version = Gauge(
            "segstream_model_version",
            "Version of the segment model used for scoring.",
            registry=registry,
        )
        self.trainer = Gauge(
            "segstream_trainer",
            "1 while this process holds the trainer lease (trains and "
            "publishes the models), else 0.",
            registry=registry,
        )
        self._segments: set[int] = set()  # segments with users/volatility series
        for tag in predictive_tags:
            self.drift_detections.labels(tag=tag)
            for value in ("0", "1"):
                self.labels_resolved.labels(tag=tag, value=value)

    def segment_names(self, names: Mapping[int, str]) -> None:
        """The current segments' names, as ``segstream_segment_info`` series."""
        self.segment_info.clear()
        for segment, name in names.items():
            self.segment_info.labels(segment=str(segment), name=name).set(1)

    def segment_figures(
        self, segments: Sequence[int], sizes: Mapping[int, int], moves: Mapping[int, int]
    ) -> None:
        """Users per segment and volatility (enters + exits per user) at a new snapshot; a
        retired segment's series are dropped."""
        for segment in self._segments - set(segments):
            self.segment_users.remove(str(segment))
            self.segment_volatility.remove(str(segment))
        for segment in segments:
            size = sizes.get(segment, 0)
            self.segment_users.labels(segment=str(segment)).set(size)
            self.segment_volatility.labels(segment=str(segment)).set(
                moves.get(segment, 0) / size if size else 0.0
            )
        self._segments = set(segments)

    def observe_shift(self, before: SegmentSnapshot | None, after: SegmentSnapshot) -> None:
        """How far each segment's center moved (log1p units); new segments moved 0."""

        def centers(snapshot: SegmentSnapshot) -> dict[int, list[float]]:
            return {
                segment: [
                    m + s * z for m, s, z in zip(snapshot.means, snapshot.stds, center, strict=True)
                ]
                for segment, center in zip(snapshot.segment_ids, snapshot.centers, strict=True)
            }

        old = centers(before) if before is not None and before.features == after.features else {}
        new = centers(after)
        for segment in set(old) - set(new):
            with suppress(KeyError):
                self.centroid_shift.remove(str(segment))
        for segment, center in new.items():
            shift = math.dist(center, old[segment]) if segment in old else 0.0
            self.centroid_shift.labels(segment=str(segment)).set(shift)
