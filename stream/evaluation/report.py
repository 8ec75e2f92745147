"""The evaluation's files: per-user CSVs, ``report.json``, ``report.md`` and PNG plots."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from operators.segments import SegmentProfile, SegmentSnapshot


def write_segment_files(
    out_dir: Path,
    rows: dict[str, dict[str, float]],
    labels: Sequence[int],
    snapshot: SegmentSnapshot,
    columns: Sequence[str],
    profiles: Sequence[SegmentProfile],
) -> None:
    """``features.csv``, ``segments.csv`` and ``segments.json`` (the final model's profiles)."""
    with (out_dir / "features.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", *columns])
        for user, features in rows.items():
            writer.writerow([user, *(_number(features[c]) for c in columns)])
    with (out_dir / "segments.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "segment"])
        writer.writerows(zip(rows, labels, strict=True))
    sizes = {s: labels.count(s) for s in set(labels)}
    segments: list[dict[str, Any]] = [
        {
            "segment": p.segment,
            "name": p.name,
            "users": sizes.get(p.segment, 0),
            "centroid": {k: round(v, 4) for k, v in p.centroid.items()},
        }
        for p in profiles
    ]
    doc = {"model": snapshot.to_dict(), "segments": segments}
    (out_dir / "segments.json").write_text(json.dumps(doc, indent=2) + "\n")
    _plot_segments(out_dir, rows, labels, snapshot, segments)


def write_report(out_dir: Path, report: dict[str, Any]) -> None:
    segments = json.loads((out_dir / "segments.json").read_text())["segments"]
    report = {**report, "segments": segments}
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    cost, ari, relabel = report["cost_ratio"], report["ari"], report["relabelled_per_window"]
    lines = [
        "# segstream evaluation",
        "",
        f"{report['events']:,} events; k = {report['k']}; segment features: "
        f"{', '.join(report['segment_features'])}; {len(report['runs'])} model seeds.",
        "",
        *_user_lines(report.get("users")),
        "| figure | median | worst | target |",
        "|---|---|---|---|",
        f"| k-means cost ÷ offline k-means++ cost | {cost['median']:.3f} | {cost['worst']:.3f} "
        "| ≤ 1.10 |",
        f"| ARI against offline k-means++ | {ari['median']:.3f} | {ari['worst']:.3f} | ≥ 0.8 |",
        f"| unchanged users relabelled per window, as served | {relabel['served_median']:.2%} "
        f"| {relabel['served_max']:.2%} | ≤ 1% |",
        f"| ... by raw nearest center | {relabel['raw_median']:.2%} | {relabel['raw_max']:.2%} | |",
        "",
        "## Segments (seed 0)",
        "",
        "| segment | users | name | " + " | ".join(segments[0]["centroid"]) + " |",
        "|---|---|---|" + "---|" * len(segments[0]["centroid"]),
    ]
    for s in segments:
        lines.append(
            f"| {s['segment']} | {s['users']:,} | {s['name']} | "
            + " | ".join(f"{v:,.1f}" for v in s["centroid"].values())
            + " |"
        )
    lines += ["", "Plots: `segment_profiles.png`, `segments_2d.png`.", ""]
    if report.get("tags"):
        lines += _tag_lines(report["tags"])
        _plot_tag_auc(out_dir, report["tags"])
    (out_dir / "report.md").write_text("\n".join(lines))


def _user_lines(users: dict[str, Any] | None) -> list[str]:
    """Who was judged: the buyers the service kept, and those that expired before the end."""
    if not users:
        return []
    lines = [
        f"Judged: the {users['evaluated']:,} buyers the service still held at the end, each "
        "against an offline k-means++ fitted on exactly those users' features as the service "
        f"kept them. {users['expired']:,} users expired before the end (idle "
        f"{users['max_idle_days']} days, `SEGSTREAM_MAX_IDLE_DAYS`), "
        f"{users['buyers_expired']:,} of them buyers.",
        "",
    ]
    if users["expired_by_month"]:
        lines += ["| month | users expired |", "|---|---|"]
        lines += [f"| {month} | {n:,} |" for month, n in users["expired_by_month"].items()]
        lines.append("")
    return lines


def _tag_lines(tags: list[dict[str, Any]]) -> list[str]:
    lines = [
        "## Predictive tags",
        "",
        "Every user with a purchase, scored at weekly event-time snapshots by the online tagger "
        "as it stood then (`tag_scores.csv`), against what happened within the horizon. "
        "Offline: scikit-learn logistic regression on the same features, retrained at each "
        "snapshot on the snapshots whose outcome was known by then. Exact ROC AUC pooled over "
        "the snapshots where each had a model.",
        "",
        "| tag | horizon | online AUC | offline AUC | online log-loss | offline log-loss "
        "| rows (online) | snapshots (online) | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for tag in tags:
        online, offline = tag["online"], tag["offline"]
        lines.append(
            f"| {tag['tag']} | {tag['horizon_days']:g} d | {_figure(online['auc'])} "
            f"| {_figure(offline['auc'])} | {_figure(online['log_loss'])} "
            f"| {_figure(offline['log_loss'])} | {online['rows']:,} | {online['snapshots']} "
            "| AUC ≥ 0.74 |"
        )
    lines += ["", "Plot: `tag_auc.png` (AUC at each snapshot).", ""]
    return lines


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _plot_tag_auc(out_dir: Path, tags: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from datetime import UTC, datetime

    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(tags), 1, figsize=(8, 3 * len(tags)), squeeze=False)
    for ax, tag in zip(axes[:, 0], tags, strict=True):
        points = tag["per_snapshot"]
        days = [datetime.fromtimestamp(p["snapshot_ms"] / 1000, UTC) for p in points]
        for key, label in (("online_auc", "online (River)"), ("offline_auc", "offline (sklearn)")):
            ax.plot(
                days,
                [np.nan if p[key] is None else p[key] for p in points],
                marker=".",
                label=label,
            )
        ax.axhline(0.74, color="grey", linewidth=0.5, linestyle="--")
        ax.set_ylim(0.4, 1.0)
        ax.set_ylabel("ROC AUC")
        ax.set_title(f"{tag['tag']}: AUC at each weekly snapshot")
        ax.legend(fontsize=8)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(out_dir / "tag_auc.png", dpi=100)
    plt.close(fig)


def _plot_segments(
    out_dir: Path,
    rows: dict[str, dict[str, float]],
    labels: Sequence[int],
    snapshot: SegmentSnapshot,
    segments: list[dict[str, Any]],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    features = list(snapshot.features)
    # Profiles: each segment's center in standard units of the (log) features.
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(segments), 1)
    for i, (segment, center) in enumerate(zip(snapshot.segment_ids, snapshot.centers, strict=True)):
        name = next(s["name"] for s in segments if s["segment"] == segment)
        ax.bar(np.arange(len(features)) + i * width, center, width, label=f"{segment}: {name}")
    ax.set_xticks(np.arange(len(features)) + 0.4 - width / 2, features)
    ax.set_ylabel("center, standard units of log1p")
    ax.axhline(0, color="grey", linewidth=0.5)
    ax.legend(fontsize=7)
    ax.set_title("Segment profiles")
    fig.tight_layout()
    fig.savefig(out_dir / "segment_profiles.png", dpi=100)
    plt.close(fig)
    # Users projected on the two principal axes of their standardized log features.
    x = np.log1p(np.maximum(np.array([[r[f] for f in features] for r in rows.values()]), 0))
    z = (x - x.mean(axis=0)) / np.where(x.std(axis=0) > 0, x.std(axis=0), 1)
    _, _, axes = np.linalg.svd(z, full_matrices=False)
    xy = z @ axes[:2].T
    fig, ax = plt.subplots(figsize=(6, 5))
    array = np.asarray(labels)
    for segment in sorted(set(labels)):
        mask = array == segment
        ax.scatter(xy[mask, 0], xy[mask, 1], s=4, alpha=0.6, label=str(segment))
    ax.set_xlabel("first principal axis")
    ax.set_ylabel("second principal axis")
    ax.legend(title="segment", markerscale=3)
    ax.set_title("Users by segment (PCA of standardized log features)")
    fig.tight_layout()
    fig.savefig(out_dir / "segments_2d.png", dpi=100)
    plt.close(fig)


def _number(value: float) -> str:
    return f"{value:.6f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))
