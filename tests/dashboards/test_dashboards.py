"""Dashboards only query series segstream exports (issue 4 runs every query on Prometheus)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from stream.api.app import request_histogram
from stream.metrics import Metrics

DASHBOARDS = sorted(Path(__file__).parents[2].joinpath("dashboards").glob("*.json"))
_METRIC = re.compile(r"\bsegstream_[a-z0-9_]+")


def _exported_series() -> set[str]:
    registry = CollectorRegistry()
    Metrics(registry, "test")
    # segstream api's, labelled: its series exist from the first request on.
    request_histogram(registry).labels("/v1/users/{user_id}", "GET", "200").observe(0.001)
    text = generate_latest(registry).decode()
    return {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    } | {
        # Histograms with no observations still expose _bucket/_sum/_count.
        m.group(0)
        for m in _METRIC.finditer(text)
    }


def test_the_overview_model_and_business_dashboards_have_fixed_uids() -> None:
    uids = {json.loads(path.read_text())["uid"] for path in DASHBOARDS}
    assert uids == {"segstream-overview", "segstream-model", "segstream-business"}


def test_the_json_files_are_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location("generate", DASHBOARDS[0].parent / "generate.py")
    assert spec is not None and spec.loader is not None
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    for name, doc in generate.DASHBOARDS.items():
        written = json.loads((DASHBOARDS[0].parent / name).read_text())
        assert written == doc, f"{name} is stale: run dashboards/generate.py"
        panels = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in written["panels"]]
        assert len(set(panels)) == len(panels)  # no two panels on one spot


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
