"""Documentation is part of the feature: every setting and metric is in the README."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from stream.metrics import Metrics
from stream.settings import describe_settings

README = Path(__file__).parents[1].joinpath("README.md").read_text()


def test_every_setting_is_documented_with_its_default_and_description() -> None:
    for env, default, doc in describe_settings():
        assert f"| `{env}` | `{default}` | {doc} |" in README, env


def test_every_metric_is_documented() -> None:
    registry = CollectorRegistry()
    Metrics(registry, "test")
    names = set()
    for family in registry.collect():
        kind = family.type
        name = family.name + ("_total" if kind == "counter" else "_info" if kind == "info" else "")
        names.add(name.removesuffix("_info") + ("_info" if kind == "info" else ""))
    for name in names:
        documented = name.removesuffix("_info") if name.endswith("_info") else name
        assert f"`{documented}" in README, name


def test_readme_shows_the_two_commands() -> None:
    assert "make demo" in README and "make test" in README
