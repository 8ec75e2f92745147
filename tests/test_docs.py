"""Documentation is part of the feature: the README is a front door that names every command,
every setting and metric is in docs/, and every link between them leads somewhere."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from stream.cli.main import COMMANDS
from stream.metrics import Metrics
from stream.settings import describe_settings

ROOT = Path(__file__).parents[1]
README = ROOT.joinpath("README.md").read_text()
SETTINGS = ROOT.joinpath("docs", "settings.md").read_text()
METRICS = ROOT.joinpath("docs", "metrics.md").read_text()


def test_every_setting_is_documented_with_its_default_and_description() -> None:
    for env, default, doc in describe_settings():
        assert f"| `{env}` | `{default}` | {doc} |" in SETTINGS, env


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
        assert f"`{documented}" in METRICS, name


def test_readme_is_a_front_door_with_the_two_commands_first() -> None:
    assert len(README.splitlines()) <= 250
    assert README.index("make demo") < README.index("## Where next") < README.index("## Commands")
    assert "make test" in README


def test_the_readme_names_every_command_in_its_table() -> None:
    table = README[README.index("## Commands") :]
    rows = [line for line in table.splitlines() if line.startswith("| `segstream ")]
    named = {re.match(r"\| `segstream ([a-z-]+)", row).group(1) for row in rows}  # type: ignore[union-attr]
    assert named == set(COMMANDS)


def test_every_relative_link_in_the_docs_leads_to_a_file_and_heading() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)]+)\)", page.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target}")
                continue
            if anchor and file.suffix == ".md":
                headings = {
                    re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
                    for h in re.findall(r"^#+ (.+)$", file.read_text(), re.M)
                }
                if anchor not in headings:
                    broken.append(f"{page.name}: {target}")
    assert not broken, broken
