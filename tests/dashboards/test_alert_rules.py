"""The shipped alert and recording rules parse and pass their unit tests (promtool)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from tests.support.servers import missing

RULES = Path(__file__).parents[2] / "dashboards" / "prometheus"


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        missing(
            "promtool",
            FileNotFoundError("not on PATH"),
            "install Debian's prometheus package (`make services-up` does)",
        )
    assert found is not None
    return found


def test_rules_are_valid() -> None:
    done = subprocess.run(
        [promtool(), "check", "rules", "alerts.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 18 rules found" in done.stdout


def test_each_alert_fires_on_its_failure_and_not_on_health() -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", "alerts_test.yml"],
        cwd=RULES,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    tested = {
        line.split("alertname:")[1].split()[0]
        for line in (RULES / "alerts_test.yml").read_text().splitlines()
        if "alertname:" in line
    }
    shipped = {
        line.split("alert:")[1].strip()
        for line in (RULES / "alerts.yml").read_text().splitlines()
        if "- alert:" in line
    }
    assert tested == shipped  # every alert has a test
