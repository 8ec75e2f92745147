"""``/metrics`` (Prometheus text format) and ``/healthz`` on a background thread.

A thread per connection, but at most ``MAX_CONNECTIONS`` at once (more are closed at once) and
each gives up on a client silent for ``READ_TIMEOUT_S``: half-sent requests cannot pile up
threads. A scraper needs one connection for well under a second.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

MAX_CONNECTIONS: Final = 32
READ_TIMEOUT_S: Final = 5.0


class _BoundedServer(ThreadingHTTPServer):
    """At most ``limit`` connections handled at once; one past that is closed unanswered."""

    daemon_threads = True
    request_queue_size = 64  # the listen backlog: scrapes queue here while threads are busy

    def __init__(self, address: tuple[str, int], handler: Any, limit: int) -> None:
        self._slots = threading.BoundedSemaphore(limit)
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()  # no thread started to release it
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class HttpServer:
    """Serves until ``close()``. ``healthy()`` decides /healthz: 200 when true, else 503."""

    def __init__(
        self,
        host: str,
        port: int,
        registry: CollectorRegistry,
        healthy: Callable[[], bool],
        *,
        max_connections: int = MAX_CONNECTIONS,
        read_timeout_s: float = READ_TIMEOUT_S,
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            timeout = read_timeout_s  # the socket's: a silent client is dropped

            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/metrics":
                    self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    ok = healthy()
                    self._reply(200 if ok else 503, b"ok\n" if ok else b"stalled\n", "text/plain")
                else:
                    self._reply(404, b"not found: try /metrics or /healthz\n", "text/plain")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass  # scrapes every few seconds would drown the lifecycle log

        self._server = _BoundedServer((host, port), Handler, max_connections)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="segstream-http", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
