from __future__ import annotations

import socket
import threading
import time
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


def test_half_sent_requests_neither_pile_up_threads_nor_keep_them() -> None:
    registry = CollectorRegistry()
    Metrics(registry, "9.9")
    server = HttpServer(
        "127.0.0.1", 0, registry, lambda: True, max_connections=8, read_timeout_s=0.5
    )
    server.start()
    before = threading.active_count()
    clients = []
    try:
        for _ in range(60):  # each sends half a request line and waits
            conn = socket.create_connection(("127.0.0.1", server.port))
            conn.sendall(b"GET /metr")
            clients.append(conn)
        time.sleep(0.2)
        assert threading.active_count() <= before + 8
        # Past the read timeout every thread is gone and scrapes are answered again.
        deadline = time.monotonic() + 5
        while threading.active_count() > before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= before
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics").read()
        assert b'segstream_build_info{model_version="0",version="9.9"} 1.0' in body
        assert urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz").status == 200
    finally:
        for conn in clients:
            conn.close()
        server.close()
