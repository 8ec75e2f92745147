"""What a batch is run with (``PipelineConfig``) and what it yields (``BatchOutcome``)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from operators.changes import UserChanged
from operators.columns import Matrix
from operators.events import Event
from operators.features import DAY_MS, UserState
from operators.labels import Label
from operators.pending import PendingLabel
from operators.tags import TagDefinition


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    segment_features: tuple[str, ...]  # the features the trainer learns segments from
    train_sample_permille: int  # share of users whose data trains the models, in ‰
    switch_margin: float = 0.25  # anti-flapping: see operators.segments.choose_segment
    switch_after: int = 3
    late_grace_ms: int = 3_600_000  # events older than the watermark by more are late
    rescore_interval_ms: int = DAY_MS  # a quiet user is re-scored this often (event time)
    max_idle_ms: int = 400 * DAY_MS  # ...until idle this long; then it expires (removed)
    tags: tuple[TagDefinition, ...] = ()
    alert_tags: tuple[str, ...] = ("churn_risk",)  # entering one of these raises an alert
    label_every_ms: int = 7 * DAY_MS  # a sampled user opens a tag's label at most this often


@dataclass(slots=True)
class BatchOutcome:
    records: dict[str, bytes] = field(default_factory=dict)  # stored form; changed users only
    states: dict[str, UserState] = field(default_factory=dict)  # ``process_events`` only
    changes: list[UserChanged] = field(default_factory=list)
    alerts: list[tuple[UserChanged, str]] = field(default_factory=list)  # (change, tag entered)
    # The sampled users' training vectors: a row each, ``segment_features`` in order.
    training_vectors: Matrix = field(default_factory=lambda: np.empty((0, 0)))
    labels: list[Label] = field(default_factory=list)
    # The open labels of the users whose labels moved, stored form (b"": none left).
    pending: dict[str, bytes] = field(default_factory=dict)
    open_labels: dict[str, list[PendingLabel]] = field(default_factory=dict)  # process_events
    late: list[tuple[Event, int]] = field(default_factory=list)  # (event, watermark it missed)
    failed: list[tuple[Event, str]] = field(default_factory=list)  # (event, exception class)
    failed_rescorings: list[tuple[str, str]] = field(default_factory=list)  # (user, class)
    dues: dict[str, int] = field(default_factory=dict)  # next re-scoring time; 0: none
    removed: list[str] = field(default_factory=list)  # users whose stored state goes, first
    watermark_ms: int = 0
    processed_by_type: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    rescored: int = 0


@cache
def label_features(config: PipelineConfig) -> tuple[str, ...]:
    """Every feature the predictive tags' labels keep."""
    return tuple(
        dict.fromkeys(f for t in config.tags if t.kind == "predictive" for f in t.features)
    )


@cache
def scored_features(config: PipelineConfig) -> tuple[str, ...]:
    """Every feature one scoring needs: the segment model's and the tags'."""
    names = list(config.segment_features)
    for tag in config.tags:
        names += [tag.feature] if tag.kind == "rule" else list(tag.features)
    return tuple(dict.fromkeys(names))
