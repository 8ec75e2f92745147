"""Every dashboard query and every rule runs on a real Prometheus scraping a real segstream.

segstream serves on the real Kafka and Redis and processes simulated shoppers while Debian's
Prometheus (2.42, the oldest we support) scrapes it every second and evaluates
``dashboards/prometheus/alerts.yml``. Then each panel query, with Grafana's macros substituted,
goes through the HTTP API: it must parse, name only metrics that were scraped, and return
series (a few panels are empty by design in a healthy run and say why below).
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from stream.feeds.simulator import MALFORMED, encode, generate_events
from tests.support.api import start_api
from tests.support.servers import end_offsets, missing, ordered_producer, redis_client
from tests.support.service import Service

pytestmark = [pytest.mark.kafka, pytest.mark.redis]
ROOT = Path(__file__).parents[2]
DASHBOARDS = sorted((ROOT / "dashboards").glob("*.json"))
RULES = ROOT / "dashboards" / "prometheus" / "alerts.yml"
MACROS = {"$__rate_interval": "30s", "$__range": "5m", "$__interval": "5s"}
# Short horizons and daily labels, so tag models are published within a 60-day stream.
TAGS = json.dumps(
    [
        {
            "name": "churn_risk",
            "kind": "predictive",
            "label": "no_purchase_within",
            "horizon_days": 5,
            "enter": 0.7,
            "exit": 0.5,
        },
        {
            "name": "likely_buyer",
            "kind": "predictive",
            "label": "purchase_within",
            "horizon_days": 3,
            "enter": 0.6,
            "exit": 0.4,
        },
        {"name": "vip", "kind": "rule", "feature": "spend_90d", "op": ">", "value": 300},
    ]
)
# Series that do not exist while nothing fails (their labels name the failure); their names
# are checked against the registry by test_dashboards.py instead.
EMPTY_WHEN_HEALTHY = {"segstream_errors_total"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
    try:
        with urllib.request.urlopen(url, timeout=30) as reply:
            return json.loads(reply.read())
    except urllib.error.HTTPError as error:  # 400 on a bad query: the body says why
        return json.loads(error.read())


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A base URL of Prometheus scraping a segstream that has processed ~13k events."""
    binary = shutil.which("prometheus")
    if binary is None:
        missing(
            "prometheus",
            FileNotFoundError("not on PATH"),
            "install Debian's prometheus package (`make services-up` does)",
        )
    assert binary is not None
    tmp = tmp_path_factory.mktemp("prometheus")
    client: redis.Redis = redis_client()
    svc = Service(
        tmp,
        SEGSTREAM_MAX_BATCH_RECORDS="200",
        SEGSTREAM_SNAPSHOT_EVERY_SAMPLES="300",
        SEGSTREAM_TRAIN_SAMPLE_PERMILLE="1000",
        SEGSTREAM_TAGS=TAGS,
        SEGSTREAM_LABEL_EVERY_DAYS="1",
        SEGSTREAM_ALERT_TAGS="churn_risk",
    )
    svc.start()
    api_process = start_api(svc, tmp / "api.log")
    port = free_port()
    config = tmp / "prometheus.yml"
    config.write_text(
        json.dumps(
            {  # JSON is YAML
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": "segstream",
                        "static_configs": [{"targets": [f"127.0.0.1:{svc.http_port()}"]}],
                    },
                    {
                        "job_name": "segstream-api",
                        "static_configs": [{"targets": [api_process.url.removeprefix("http://")]}],
                    },
                ],
            }
        )
    )
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp / "prometheus.log").open("wb"),
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not scraped(base):
            assert server.poll() is None, (tmp / "prometheus.log").read_text()
            assert time.monotonic() < deadline, "Prometheus never scraped segstream"
            time.sleep(0.5)
        producer = ordered_producer()
        events = list(itertools.islice(generate_events(300, seed=11, days=60), 13_000))
        for event in events:
            key, value = encode(event)
            producer.send(svc.input_topic, key=key, value=value)
        for value in MALFORMED:
            producer.send(svc.input_topic, key=b"u", value=value)
        producer.flush()
        producer.close()
        svc.wait_for_offsets(client, end_offsets(svc.input_topic))
        users = sorted(svc.states(client))[:50]
        deadline = time.monotonic() + 10  # the API looks for partitions every 2 s until found
        while api_process.call("GET", f"/v1/users/{users[0]}")[0] != 200:
            assert time.monotonic() < deadline, "the API never found the consumers' partitions"
            time.sleep(0.5)
        for user in users:  # the API panels: answers and a 404
            assert api_process.call("GET", f"/v1/users/{user}")[0] == 200
        assert api_process.call("GET", "/v1/users/nobody-at-all")[0] == 404
        time.sleep(5)  # a few more scrapes and rule evaluations after the last batch
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
        api_process.process.terminate()
        api_process.process.wait(timeout=30)
        svc.cleanup(client)


def scraped(base: str) -> bool:
    """True once Prometheus is up and has scraped segstream."""
    try:
        return bool(api(base, "query", query='up{job="segstream"} == 1')["data"]["result"])
    except urllib.error.URLError:  # not listening yet
        return False


def dashboard_queries() -> list[tuple[str, str, str]]:
    found = []
    for path in DASHBOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                found.append((path.name, panel["title"], target["expr"]))
    return found


def rule_expressions() -> list[tuple[str, str]]:
    import yaml  # the rules are YAML

    doc = yaml.safe_load(RULES.read_text())
    return [
        (rule.get("alert") or rule["record"], rule["expr"])
        for group in doc["groups"]
        for rule in group["rules"]
    ]


def substitute(expr: str) -> str:
    for macro, value in MACROS.items():
        expr = expr.replace(macro, value)
    return expr


def test_every_panel_query_parses_and_returns_series(prometheus: str) -> None:
    scraped = set(api(prometheus, "label/__name__/values")["data"])
    problems = []
    for dashboard, title, expr in dashboard_queries():
        reply = api(prometheus, "query", query=substitute(expr))
        if reply["status"] != "success":
            problems.append(f"{dashboard} / {title}: {reply.get('error')}")
            continue
        names = set(re.findall(r"\bsegstream_[a-z0-9_]+", expr))
        unknown = names - scraped - EMPTY_WHEN_HEALTHY  # those: test_dashboards.py checks
        if unknown:
            problems.append(f"{dashboard} / {title}: never scraped: {sorted(unknown)}")
        if not reply["data"]["result"] and not names & EMPTY_WHEN_HEALTHY:
            problems.append(f"{dashboard} / {title}: no series for {expr}")
    assert not problems, "\n".join(problems)
    assert len(dashboard_queries()) >= 30


def test_every_rule_parses_evaluates_and_records(prometheus: str) -> None:
    for name, expr in rule_expressions():
        reply = api(prometheus, "query", query=expr)
        assert reply["status"] == "success", (name, reply.get("error"))
    groups = api(prometheus, "rules")["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == len(rule_expressions()) == 18
    assert all(rule["health"] == "ok" and not rule.get("lastError") for rule in rules), rules
    # Recording rules produce series; the healthy service fires no alert but its own absence
    # test's counterpart: up is 1.
    for record in (
        "segstream:events_consumed:rate5m",
        "segstream:consumer_lag_records:sum",
        "segstream:dead_letter_ratio:rate5m",
    ):
        assert api(prometheus, "query", query=record)["data"]["result"], record
    firing = [
        a["labels"]["alertname"]
        for a in api(prometheus, "alerts")["data"]["alerts"]
        if a["state"] == "firing"
    ]
    assert "SegstreamDown" not in firing and "SegstreamAbsent" not in firing
