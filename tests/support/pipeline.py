"""A small fixed setting for tests of the pure pipeline: a start time, the RFM features, and a
two-segment model (segment 0 near "never bought", segment 1 near "bought just now, spent a
lot")."""

from __future__ import annotations

from operators.pipeline import PipelineConfig
from operators.segments import SegmentSnapshot

T0 = 1767225600000
RFM = ("recency_days", "frequency", "monetary")
CONFIG = PipelineConfig(segment_features=RFM, train_sample_permille=1000)
SNAPSHOT = SegmentSnapshot(
    version=3,
    features=RFM,
    means=(0.0,) * 3,
    stds=(1.0,) * 3,
    centers=((0.0, 0.0, 0.0), (0.0, 0.7, 4.6)),
)
