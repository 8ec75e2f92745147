"""What step 5 of a batch reads (``Context``) and produces (``Decisions``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from operators.changes import UserChanged
from operators.columns import Matrix
from operators.events import Event
from operators.labels import Label
from operators.scores import Scores
from operators.scoring import PipelineConfig
from operators.segments import SegmentSnapshot
from operators.tags import TagModel
from operators.timeline import Moments, Rows

Ints = npt.NDArray[np.int64]


@dataclass(slots=True)
class Decisions:
    """The scoring fields of every row after the batch, and what the decisions produced."""

    segment: Ints  # per row
    pending_segment: Ints
    streak: Ints
    tags: Ints
    seq: Ints
    scored: npt.NDArray[np.bool_]  # rows with at least one scoring applied
    rescorings: Ints  # re-scorings applied, per row
    changes: list[UserChanged] = field(default_factory=list)
    alerts: list[tuple[UserChanged, str]] = field(default_factory=list)
    training_vectors: Matrix = field(default_factory=lambda: np.empty((0, 0)))  # a row each
    labels: list[Label] = field(default_factory=list)
    pending: dict[str, bytes] = field(default_factory=dict)  # labels that moved, as stored
    broken: dict[int, str] = field(default_factory=dict)  # row -> exception class
    removed: list[int] = field(default_factory=list)  # rows of users expired, in order
    vector_rows: list[int] = field(default_factory=list)  # the row of each training vector
    label_rows: list[int] = field(default_factory=list)  # ... and of each released label
    labels_moved: list[int] = field(default_factory=list)  # rows whose labels moved
    tags_entered: dict[int, list[int]] = field(default_factory=dict)  # rows whose tags moved


@dataclass(frozen=True, slots=True)
class Context:
    """What every decision of a batch reads."""

    table: Rows
    moments: Moments
    scores: Scores
    versions: Matrix  # every version row of the batch (``Rows.versions``)
    events: Sequence[Event]
    snapshot: SegmentSnapshot | None
    config: PipelineConfig
    tag_models: Mapping[str, TagModel]
    pending_in: Mapping[str, bytes]  # the users' stored pending labels
    labelled: tuple[str, ...]  # the features the labels keep (none: no predictive tag)
