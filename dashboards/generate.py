"""Writes the Grafana dashboards (classic JSON model) from the panel lists below.

Edit the lists, run ``.venv/bin/python dashboards/generate.py``, commit the JSON files;
``tests/dashboards`` fails when the files and this script disagree. Every query is run on a
real Prometheus by ``tests/dashboards/test_prometheus.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
RATE = "$__rate_interval"


def panel(
    title: str,
    description: str,
    *targets: tuple[str, str],
    unit: str = "short",
    kind: str = "timeseries",
    width: int = 12,
) -> dict[str, Any]:
    return {
        "type": kind,
        "title": title,
        "description": description,
        "width": width,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def quantiles(
    metric: str, by: str = "", levels: tuple[float, ...] = (0.5, 0.9, 0.99)
) -> tuple[tuple[str, str], ...]:
    group = f"le, {by}" if by else "le"
    return tuple(
        (
            f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{RATE}])))",
            f"p{int(q * 100)}" + (f" {{{{{by}}}}}" if by else ""),
        )
        for q in levels
    )


OVERVIEW = [
    panel(
        "Events consumed per second",
        "Records read from the input topic, by event type.",
        (f"sum by (type) (rate(segstream_events_consumed_total[{RATE}]))", "{{type}}"),
        unit="ops",
    ),
    panel(
        "Records produced per second",
        "Deliveries acknowledged by Kafka, by topic.",
        (f"sum by (topic) (rate(segstream_records_produced_total[{RATE}]))", "{{topic}}"),
        unit="ops",
    ),
    panel(
        "End-to-end latency",
        "From a record's Kafka timestamp to its saved result.",
        *quantiles("segstream_end_to_end_latency_seconds"),
        unit="s",
    ),
    panel(
        "Batch stages, p99",
        "Where a batch spends its time.",
        (
            f"histogram_quantile(0.99, sum by (le, stage) "
            f"(rate(segstream_stage_duration_seconds_bucket[{RATE}])))",
            "{{stage}}",
        ),
        unit="s",
    ),
    panel(
        "Consumer lag",
        "Records not yet processed, per input partition.",
        ("sum by (partition) (segstream_consumer_lag_records)", "partition {{partition}}"),
    ),
    panel(
        "Freshness",
        "Age of the newest record processed, per input partition.",
        (
            "time() - max by (partition) (segstream_last_event_timestamp_seconds)",
            "partition {{partition}}",
        ),
        unit="s",
    ),
    panel(
        "Dead letters and late events per second",
        "Rejected records by reason; events older than the watermark.",
        (f"sum by (reason) (rate(segstream_events_dead_lettered_total[{RATE}]))", "{{reason}}"),
        (f"sum(rate(segstream_events_late_total[{RATE}]))", "late"),
        (f"sum(rate(segstream_events_duplicate_total[{RATE}]))", "duplicate"),
        unit="ops",
    ),
    panel(
        "Errors per second",
        "Failed attempts by stage and reason (retried, then fatal).",
        (f"sum by (stage, reason) (rate(segstream_errors_total[{RATE}]))", "{{stage}} {{reason}}"),
        (f"sum by (operation) (rate(segstream_redis_errors_total[{RATE}]))", "redis {{operation}}"),
        unit="ops",
    ),
    panel(
        "Redis latency, p99",
        "Per operation of the state and model stores.",
        (
            f"histogram_quantile(0.99, sum by (le, operation) "
            f"(rate(segstream_redis_operation_duration_seconds_bucket[{RATE}])))",
            "{{operation}}",
        ),
        unit="s",
    ),
    panel(
        "Rebalances and commits",
        "Partition assignment changes; Kafka offset commits.",
        (f"sum by (kind) (increase(segstream_rebalances_total[{RATE}]))", "{{kind}}"),
        (
            f"sum by (result) (increase(segstream_offset_commits_total[{RATE}]))",
            "commit {{result}}",
        ),
    ),
    panel(
        "Partitions per consumer",
        "Input partitions each process owns; fenced batches.",
        ("sum by (instance) (segstream_assigned_partitions)", "{{instance}}"),
        (f"sum(increase(segstream_partitions_fenced_total[{RATE}]))", "fenced batches"),
    ),
    panel(
        "Seconds since the last batch",
        "Loop liveness: /healthz fails past 30 s.",
        ("time() - max by (instance) (segstream_last_batch_timestamp_seconds)", "{{instance}}"),
        unit="s",
    ),
    panel(
        "API requests per second",
        "segstream api: requests by route and status (404: no state for that user).",
        (
            f"sum by (route, status) (rate(segstream_api_request_duration_seconds_count[{RATE}]))",
            "{{route}} {{status}}",
        ),
        unit="reqps",
    ),
    panel(
        "API latency",
        "segstream api: time to answer, by route (p99 target of GET /v1/users: 5 ms).",
        *quantiles("segstream_api_request_duration_seconds", "route", (0.5, 0.99)),
        unit="s",
    ),
]

MODEL = [
    panel(
        "Users per segment",
        "Exact sizes, summed over consumers, at each model snapshot; named as the analysts "
        "named them (PUT /v1/segments/{id}/name), else by their generated names.",
        (
            "sum by (segment, name) (segstream_segment_users"
            " * on (instance, segment) group_left (name) segstream_segment_info)",
            "{{name}} ({{segment}})",
        ),
    ),
    panel(
        "Segment volatility",
        "(Enters + exits) / size over the last snapshot window.",
        ("max by (segment) (segstream_segment_volatility)", "segment {{segment}}"),
        unit="percentunit",
    ),
    panel(
        "Centroid shift per snapshot",
        "How far each center moved (log1p units).",
        ("max by (segment) (segstream_segment_centroid_shift)", "segment {{segment}}"),
    ),
    panel(
        "Model version and trainer",
        "Segment model in use; which process trains.",
        ("max(segstream_model_version)", "model version"),
        ("sum by (instance) (segstream_trainer)", "trainer {{instance}}"),
        (
            f"sum(increase(segstream_model_snapshots_published_total[{RATE}]))",
            "snapshots published",
        ),
    ),
    panel(
        "Tagger AUC",
        "Exact prequential ROC AUC over each tag's last 5,000 labels.",
        ("max by (tag) (segstream_tag_auc)", "{{tag}}"),
    ),
    panel(
        "Tagger log-loss",
        "Prequential log-loss over each tag's last 5,000 labels.",
        ("max by (tag) (segstream_tag_log_loss)", "{{tag}}"),
    ),
    panel(
        "Labels learned per second",
        "Delayed labels by tag and outcome.",
        (
            f"sum by (tag, value) (rate(segstream_labels_resolved_total[{RATE}]))",
            "{{tag}} = {{value}}",
        ),
        unit="ops",
    ),
    panel(
        "Drift detections and readiness",
        "ADWIN changes in tag loss; tags ready to score.",
        (f"sum by (tag) (increase(segstream_drift_detections_total[{RATE}]))", "drift {{tag}}"),
        ("max by (tag) (segstream_tag_ready)", "ready {{tag}}"),
    ),
    panel(
        "Re-scorings per second",
        "Quiet users re-scored by the sweeper (event time).",
        (f"sum(rate(segstream_users_rescored_total[{RATE}]))", "re-scorings"),
        unit="ops",
    ),
]

BUSINESS = [
    panel(
        "Segment transitions per second",
        "Users moving between segments (from, to).",
        (
            f"sum by (from, to) (rate(segstream_segment_transitions_total[{RATE}]))",
            "{{from}} → {{to}}",
        ),
        unit="ops",
    ),
    panel(
        "Tag enters and exits per second",
        "Users entering or leaving each tag.",
        (
            f"sum by (tag, direction) (rate(segstream_tag_transitions_total[{RATE}]))",
            "{{tag}} {{direction}}",
        ),
        unit="ops",
    ),
    panel(
        "Churn alerts per hour",
        "Alerts published to the churn-alerts topic, by tag.",
        ("sum by (tag) (increase(segstream_alerts_total[1h]))", "{{tag}}"),
    ),
    panel(
        "Churn alerts in the range",
        "Alerts published over the dashboard's time range.",
        ("sum(increase(segstream_alerts_total[$__range]))", "alerts"),
        kind="stat",
    ),
    panel(
        "Change events per second",
        "user_changed events on the change topic.",
        (f"sum(rate(segstream_segment_changes_total[{RATE}]))", "changes"),
        unit="ops",
    ),
]


def dashboard(uid: str, title: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    laid, x, y = [], 0, 0
    for number, spec in enumerate(panels, start=1):
        spec = dict(spec)
        width = spec.pop("width")
        if x + width > 24:
            x, y = 0, y + 8
        laid.append({"id": number, "gridPos": {"h": 8, "w": width, "x": x, "y": y}, **spec})
        x += width
    return {
        "uid": uid,
        "title": title,
        "tags": ["segstream"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Data source",
                    "current": {},
                    "hide": 0,
                }
            ]
        },
        "annotations": {"list": []},
        "panels": laid,
    }


DASHBOARDS = {
    "overview.json": dashboard("segstream-overview", "segstream: overview", OVERVIEW),
    "model.json": dashboard("segstream-model", "segstream: models", MODEL),
    "business.json": dashboard("segstream-business", "segstream: business", BUSINESS),
}


def main() -> None:
    for name, doc in DASHBOARDS.items():
        (HERE / name).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
