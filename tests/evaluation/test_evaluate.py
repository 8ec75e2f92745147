"""``segstream evaluate`` on the real UCI Online Retail file: the issue's targets, end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from stream.cli import main
from tests.support.data import online_retail_path


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("evaluation")
    code = main(["evaluate", "--input", str(online_retail_path()), "--preset", "online-retail",
                 "--k", "4", "--segment-features", "recency_days,frequency,monetary",
                 "--seeds", "5", "--out", str(out)])
    assert code == 0
    return out


def test_segments_reach_the_offline_kmeans_targets(evaluation: Path) -> None:
    report = json.loads((evaluation / "report.json").read_text())
    assert len(report["runs"]) == 5
    assert report["cost_ratio"]["median"] <= 1.10
    assert report["ari"]["median"] >= 0.8
    assert report["relabelled_per_window"]["served_max"] <= 0.01
    assert report["relabelled_per_window"]["windows"] >= 10


def test_writes_the_per_user_files_and_plots(evaluation: Path) -> None:
    with (evaluation / "features.csv").open() as handle:
        features = list(csv.DictReader(handle))
    with (evaluation / "segments.csv").open() as handle:
        segments = list(csv.DictReader(handle))
    assert list(features[0]) == ["user_id", "recency_days", "frequency", "monetary"]
    assert len(features) == len(segments) == 4_338  # every customer with a purchase
    assert [f["user_id"] for f in features] == [s["user_id"] for s in segments]
    assert len({s["segment"] for s in segments}) == 4
    assert all(int(f["frequency"]) >= 1 for f in features)
    report = (evaluation / "report.md").read_text()
    assert "ARI against offline k-means++" in report
    for plot in ("segment_profiles.png", "segments_2d.png"):
        assert (evaluation / plot).read_bytes()[:4] == b"\x89PNG"
