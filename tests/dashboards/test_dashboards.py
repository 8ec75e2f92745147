"""Dashboards only query series segstream exports (issue 4 runs every query on Prometheus)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from stream.metrics import Metrics

DASHBOARDS = sorted(Path(__file__).parents[2].joinpath("dashboards").glob("*.json"))
_METRIC = re.compile(r"\bsegstream_[a-z0-9_]+")


def _exported_series() -> set[str]:
    registry = CollectorRegistry()
    Metrics(registry, "test")
    text = generate_latest(registry).decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")} | {
        # Histograms with no observations still expose _bucket/_sum/_count.
        m.group(0) for m in _METRIC.finditer(text)}


def test_there_is_an_overview_dashboard_with_a_fixed_uid() -> None:
    docs = {json.loads(path.read_text())["uid"] for path in DASHBOARDS}
    assert "segstream-overview" in docs


def test_every_dashboard_query_uses_an_exported_metric() -> None:
    exported = _exported_series()
    for path in DASHBOARDS:
        doc = json.loads(path.read_text())
        for panel in doc["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", (path.name, panel["title"])
            for target in panel["targets"]:
                names = _METRIC.findall(target["expr"])
                assert names, (path.name, panel["title"], target["expr"])
                unknown = set(names) - exported
                assert not unknown, (path.name, panel["title"], unknown)
