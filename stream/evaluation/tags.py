"""Judging the predictive tags: online scores at weekly snapshots against offline retraining.

The history is replayed once with the tags on and every user in the training sample. At each
weekly event-time snapshot (the newest is the last moment whose longest horizon still ends
inside the file; the others go back 7 days at a time) every user with a purchase so far is
scored by the online tagger as it stood then, from the features at that moment. Each score is
judged against what the file says happened next (a purchase within the tag's horizon or not).

The baseline is scikit-learn's logistic regression on the same features (log1p, standardized),
retrained at each snapshot on the snapshots whose labels were already observable then. Both are
pooled over the snapshots and scored with the exact (rank-based) ROC AUC.
"""

from __future__ import annotations

import bisect
import csv
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from operators.features import DAY_MS, features_at
from operators.record import unpack_state
from operators.tags import PURCHASE_WITHIN, TagDefinition, predict_one
from stream.models.tag_trainer import exact_auc, log_loss
from stream.replay import Replayed, replay_events
from stream.settings import Settings
from stream.twins.state_store import InMemoryStateStore

WEEK_MS = 7 * DAY_MS
MINUTE_MS = 60_000


@dataclass(slots=True)
class TagSnapshotRows:
    """Every scored (user, snapshot) pair of one tag: features, online score, outcome. The
    numbers are kept as one array per snapshot (millions of rows on a long history: a tuple
    and a float object per row took a gigabyte)."""

    tag: TagDefinition
    users: list[str] = field(default_factory=list)
    snapshots: list[int] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    feature_blocks: list[npt.NDArray[np.float64]] = field(default_factory=list)
    online_blocks: list[npt.NDArray[np.float64]] = field(default_factory=list)

    def add_snapshot(self, features: list[tuple[float, ...]], online: list[float]) -> None:
        width = len(self.tag.features)
        self.feature_blocks.append(np.asarray(features, dtype=np.float64).reshape(-1, width))
        self.online_blocks.append(np.asarray(online, dtype=np.float64))

    @property
    def features(self) -> npt.NDArray[np.float64]:
        """A row per pair: the tag's features at the snapshot."""
        if not self.feature_blocks:
            return np.empty((0, len(self.tag.features)))
        return np.concatenate(self.feature_blocks)

    @property
    def online(self) -> npt.NDArray[np.float64]:
        """The online score of each pair (NaN: the tagger was not ready)."""
        return np.concatenate(self.online_blocks) if self.online_blocks else np.empty(0)


def weekly_snapshots(events: Sequence[Mapping[str, Any]], horizon_ms: int) -> list[int]:
    """Snapshot times, ascending: the newest ``horizon_ms`` before the file's end, then weekly.

    The file's times are to the minute, so its end is the last event's minute, fully observed.
    """
    first = min(int(e["ts"]) for e in events)
    end = max(int(e["ts"]) for e in events) + MINUTE_MS
    times, at = [], end - horizon_ms
    while at > first:
        times.append(at)
        at -= WEEK_MS
    return sorted(times)


def purchase_times(events: Sequence[Mapping[str, Any]]) -> dict[str, list[int]]:
    found: defaultdict[str, list[int]] = defaultdict(list)
    for event in events:
        if event["type"] == "purchase":
            found[str(event["user_id"])].append(int(event["ts"]))
    return {u: sorted(times) for u, times in found.items()}


def outcome(tag: TagDefinition, purchases: Sequence[int], at_ms: int) -> int:
    """The tag's label for a user scored at ``at_ms``: did a purchase follow within the horizon?"""
    after = bisect.bisect_right(purchases, at_ms)
    bought = after < len(purchases) and purchases[after] <= at_ms + tag.horizon_ms
    return int(bought) if tag.label == PURCHASE_WITHIN else int(not bought)


def score_snapshots(
    events: list[dict[str, Any]],
    settings: Settings,
    snapshots: Sequence[int],
    progress: Callable[[int, int], None] | None = None,
) -> list[TagSnapshotRows]:
    """Replay ``events``, scoring every buyer with each predictive tag at each snapshot."""
    purchases = purchase_times(events)
    rows: dict[int, TagSnapshotRows] = {}

    def look(at: Replayed, snapshot_ms: int) -> None:
        store = at.parts.state_store
        assert isinstance(store, InMemoryStateStore)
        states = [(u, unpack_state(b)) for u, b in sorted(store.users().items())]
        learners = at.processor.publisher.tag_trainers
        models = {index: learner.model() for index, learner in learners.items()}
        names = tuple(
            dict.fromkeys(f for learner in learners.values() for f in learner.tag.features)
        )
        found: dict[int, tuple[list[tuple[float, ...]], list[float]]] = {
            index: ([], []) for index in learners
        }
        for user, state in states:
            if not state.count("purchase"):
                continue
            every = features_at(state, snapshot_ms, names)  # once for every tag
            for index, learner in learners.items():
                tag, model = learner.tag, models[index]
                out = rows.setdefault(index, TagSnapshotRows(tag))
                out.users.append(user)
                out.snapshots.append(snapshot_ms)
                out.labels.append(outcome(tag, purchases[user], snapshot_ms))
                features, online = found[index]
                features.append(tuple(every[f] for f in tag.features))
                online.append(predict_one(model, every) if model.ready else math.nan)
        for index, (features, online) in found.items():
            if features:
                rows[index].add_snapshot(features, online)

    replay_events(
        settings,
        events,
        progress=progress,
        checkpoints=snapshots,
        at_checkpoint=look,
        keep_output=lambda topic, value: False,  # read from the state store, not the outputs
        # No segment model: the tags do not read one. (Its retired segments' reassignments
        # were moments too, where a label could open: on the UCI file, AUC moved by 0.00005.)
        segment_training=False,
    )
    return [rows[i] for i in sorted(rows)]


def offline_scores(rows: TagSnapshotRows) -> npt.NDArray[np.float64]:
    """Scores of logistic regression retrained at each snapshot on the labels observed by then
    (NaN where no earlier snapshot's horizon has passed, or its labels are all alike)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.log1p(np.maximum(rows.features, 0.0))
    y = np.asarray(rows.labels)
    at = np.asarray(rows.snapshots)
    scores = np.full(len(y), math.nan)
    for snapshot in np.unique(at):
        known = at + rows.tag.horizon_ms <= snapshot
        if len(np.unique(y[known])) < 2:
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(x[known], y[known])
        now = at == snapshot
        scores[now] = model.predict_proba(x[now])[:, 1]
    return scores


def judge(rows: TagSnapshotRows, offline: npt.NDArray[np.float64]) -> dict[str, Any]:
    """Pooled exact AUC and log-loss of the online and the offline scores, and per snapshot."""
    online = rows.online
    y = np.asarray(rows.labels)
    at = np.asarray(rows.snapshots)
    both = ~np.isnan(online) & ~np.isnan(offline)

    def pooled(scores: npt.NDArray[np.float64], where: npt.NDArray[np.bool_]) -> dict[str, Any]:
        auc = exact_auc(scores[where].tolist(), y[where].tolist())
        return {
            "auc": auc,
            "log_loss": log_loss(scores[where].tolist(), y[where].tolist())
            if auc is not None
            else None,
            "rows": int(where.sum()),
            "snapshots": len(np.unique(at[where])),
        }

    per_snapshot = []
    for snapshot in np.unique(at):
        now = at == snapshot
        per_snapshot.append(
            {
                "snapshot_ms": int(snapshot),
                "users": int(now.sum()),
                "positive_share": float(y[now].mean()),
                "online_auc": _auc(online, y, now & ~np.isnan(online)),
                "offline_auc": _auc(offline, y, now & ~np.isnan(offline)),
            }
        )
    return {
        "tag": rows.tag.name,
        "horizon_days": rows.tag.horizon_days,
        "label": rows.tag.label,
        "online": pooled(online, ~np.isnan(online)),
        "offline": pooled(offline, ~np.isnan(offline)),
        "online_where_both": pooled(online, both),
        "offline_where_both": pooled(offline, both),
        "per_snapshot": per_snapshot,
    }


def _auc(
    scores: npt.NDArray[np.float64], y: npt.NDArray[np.int_], where: npt.NDArray[np.bool_]
) -> float | None:
    return exact_auc(scores[where].tolist(), y[where].tolist()) if where.any() else None


def evaluate_tags(
    events: list[dict[str, Any]],
    settings: Settings,
    out_dir: Path | None = None,
) -> list[dict[str, Any]]:
    """Score, judge and (into ``out_dir``) write ``tag_scores.csv``; one report per tag."""
    predictive = [t for t in settings.tag_definitions if t.kind == "predictive"]
    if not predictive:
        return []
    snapshots = weekly_snapshots(events, max(t.horizon_ms for t in predictive))
    tables = score_snapshots(events, settings, snapshots)
    if out_dir is not None:
        write_tag_scores(out_dir / "tag_scores.csv", tables)
    return [judge(rows, offline_scores(rows)) for rows in tables]


def write_tag_scores(path: Path, tables: Sequence[TagSnapshotRows]) -> None:
    """``user_id,snapshot,tag,score``; the score is empty while the tagger lacked data."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "snapshot", "tag", "score"])
        for rows in tables:
            scores = rows.online.tolist()
            for user, at, score in zip(rows.users, rows.snapshots, scores, strict=True):
                writer.writerow(
                    [
                        user,
                        snapshot_text(at),
                        rows.tag.name,
                        "" if math.isnan(score) else f"{score:.6f}",
                    ]
                )


def snapshot_text(at_ms: int) -> str:
    return datetime.fromtimestamp(at_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
