"""docker-compose.yml is valid Compose and wires the whole stack (no Docker engine here).

The schema is the Compose Specification's own, as shipped in the compose-go module that
Docker Compose v2 is built on, fetched from the Go module proxy at a pinned version.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from stream.settings import Settings
from tests.support.servers import missing

ROOT = Path(__file__).parents[1]
COMPOSE_GO = "github.com/compose-spec/compose-go/v2@v2.4.9"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def compose_schema() -> dict[str, Any]:
    go = shutil.which("go")
    if go is None:
        missing("go (to fetch the Compose schema)", FileNotFoundError("not on PATH"), "install Go")
    assert go is not None
    done = subprocess.run(
        [go, "mod", "download", "-json", COMPOSE_GO],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    if done.returncode != 0:
        missing("the Go module proxy", RuntimeError(done.stdout + done.stderr), "check the network")
    schema_path = Path(json.loads(done.stdout)["Dir"]) / "schema" / "compose-spec.json"
    schema: dict[str, Any] = json.loads(schema_path.read_text())
    return schema


def test_the_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    jsonschema.Draft7Validator(compose_schema()).validate(compose)  # the schema says draft 7
    broken = dict(compose, services={"x": {"image": "a", "depends_on": {"y": {"bad": 1}}}})
    with pytest.raises(jsonschema.ValidationError):  # the schema does reject mistakes
        jsonschema.Draft7Validator(compose_schema()).validate(broken)


def test_the_stack_has_every_part_with_health_and_ordering(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["redis"]["image"].startswith("redis:")
    assert "--appendonly" in services["redis"]["command"]  # persistence: offsets live there
    assert "--requirepass" in services["redis"]["command"]  # and a password, always
    for name in ("segstream", "api"):
        assert services[name]["environment"]["SEGSTREAM_REDIS_PASSWORD"], name
    assert services["prometheus"]["image"].startswith("prom/prometheus:")
    assert services["grafana"]["image"].startswith("grafana/grafana:")
    assert services["segstream"]["build"] == "."
    assert services["api"]["command"] == ["api"]
    # Loopback is the default; inside the stack the servers must answer the other containers.
    assert services["segstream"]["environment"]["SEGSTREAM_HTTP_HOST"] == "0.0.0.0"
    assert services["api"]["environment"]["SEGSTREAM_API_HOST"] == "0.0.0.0"
    for name in ("kafka", "redis", "segstream", "api", "prometheus", "grafana"):
        assert "healthcheck" in services[name], name
    for name, service in services.items():
        for needed, rule in service.get("depends_on", {}).items():
            assert needed in services, (name, needed)
            assert rule["condition"] in (
                "service_started",
                "service_healthy",
                "service_completed_successfully",
            )
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), (name, source)  # mounted files are shipped
            else:
                assert source in compose["volumes"], (name, source)  # named volumes declared


def test_the_init_service_creates_every_topic_segstream_uses(compose: dict[str, Any]) -> None:
    script = compose["services"]["kafka-init"]["command"][0]
    defaults = Settings()
    for topic in (
        defaults.input_topic,
        defaults.output_topic,
        defaults.dlq_topic,
        defaults.late_topic,
        defaults.alert_topic,
        defaults.membership_topic,
    ):
        assert f" {topic}" in script, topic
    # The membership topic keeps each user's latest record for ever.
    assert f"--topic {defaults.membership_topic} " in script
    assert "--config cleanup.policy=compact" in script


def test_prometheus_loads_the_shipped_rules_and_grafana_the_dashboards(
    compose: dict[str, Any],
) -> None:
    prometheus = yaml.safe_load((ROOT / "dashboards/prometheus/prometheus.yml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["prometheus"]["volumes"])
    assert mounts["./dashboards/prometheus/alerts.yml"] in prometheus["rule_files"]
    assert prometheus["scrape_configs"][0]["static_configs"][0]["targets"] == ["segstream:8080"]
    grafana = {v.split(":")[0] for v in compose["services"]["grafana"]["volumes"]}
    for dashboard in (ROOT / "dashboards").glob("*.json"):
        assert f"./dashboards/{dashboard.name}" in grafana, dashboard.name


def test_every_published_port_binds_loopback_unless_told(compose: dict[str, Any]) -> None:
    published = [
        (name, port)
        for name, service in compose["services"].items()
        for port in service.get("ports", [])
    ]
    assert {name for name, _ in published} >= {"kafka", "redis", "segstream", "api"}
    for name, port in published:
        assert str(port).startswith("${SEGSTREAM_PUBLISH_HOST:-127.0.0.1}:"), (name, port)
