from __future__ import annotations

import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from stream.http import HttpServer
from stream.metrics import Metrics


def test_serves_metrics_and_health() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry, "9.9")
    metrics.events_dead_lettered.labels(reason="not_json").inc(3)
    healthy = [True]
    server = HttpServer("127.0.0.1", 0, registry, lambda: healthy[0])
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        body = urllib.request.urlopen(f"{base}/metrics").read().decode()
        assert 'segstream_events_dead_lettered_total{reason="not_json"} 3.0' in body
        assert 'segstream_build_info{model_version="0",version="9.9"} 1.0' in body
        assert urllib.request.urlopen(f"{base}/healthz").status == 200
        healthy[0] = False
        with pytest.raises(urllib.error.HTTPError) as stalled:
            urllib.request.urlopen(f"{base}/healthz")
        assert stalled.value.code == 503
    finally:
        server.close()
