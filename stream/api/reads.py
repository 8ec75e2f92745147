"""The API's hot read, ``GET /v1/users/{user_id}``, answered beneath FastAPI.

FastAPI's routing, parameter validation and exception layers took about a third of a GET's CPU
(py-spy, ``bench/api.py``), and at 1,000 requests/s on a machine shared with the consumers that
CPU is the latency's tail. The route stays declared in FastAPI (OpenAPI, docs); this plain ASGI
layer answers the requests it is sure of, with the same document, statuses, problem documents
and metrics, and passes everything else on: other routes and methods, ids FastAPI would refuse
(empty, too long, with a slash), and every read when reads need a token.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Final

import orjson
from prometheus_client import Histogram
from starlette.types import ASGIApp, Receive, Scope, Send

from stream.api.catalog import Catalog

log = logging.getLogger(__name__)
USERS: Final = "/v1/users/"
ROUTE: Final = "/v1/users/{user_id}"  # the route template, as metrics label it
MAX_USER_ID: Final = 128


def unknown_user(user_id: str) -> str:
    """The detail of the 404 for a user no partition holds."""
    return f"no state for user {user_id!r}"


def problem_document(status: int, title: str, detail: str, path: str) -> dict[str, Any]:
    """An RFC 9457 problem document."""
    return {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": path,
    }


class UserReads:
    """Answers open ``GET /v1/users/{user_id}`` requests; hands the rest to ``app``."""

    def __init__(self, app: ASGIApp, catalog: Catalog, histogram: Histogram) -> None:
        self.app, self.catalog, self.histogram = app, catalog, histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        user_id = path[len(USERS) :]
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not path.startswith(USERS)
            or not 0 < len(user_id) <= MAX_USER_ID
            or "/" in user_id
        ):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            doc = await self.catalog.user(user_id)
        except Exception as exc:  # as the app's handler: logged here, a problem for the client
            log.exception("api: GET %s failed", path)
            status, body = (
                500,
                problem_document(500, "Internal Server Error", type(exc).__name__, path),
            )
        else:
            missing = problem_document(404, "Not Found", unknown_user(user_id), path)
            status, body = (404, missing) if doc is None else (200, doc)
        content = orjson.dumps(body)
        kind = b"application/json" if status == 200 else b"application/problem+json"
        headers = [(b"content-type", kind), (b"content-length", str(len(content)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": content})
        self.histogram.labels(ROUTE, "GET", str(status)).observe(time.perf_counter() - started)
