"""``segstream api``: the query API, a stateless process beside the consumers (FastAPI).

Versioned under ``/v1``; OpenAPI at ``/openapi.json``, interactive docs at ``/docs`` when
``SEGSTREAM_API_DOCS`` is true; errors as
RFC 9457 problem documents (``application/problem+json``); request metrics on ``/metrics``.
Writes need ``Authorization: Bearer $SEGSTREAM_API_TOKEN`` (and reads too when
``SEGSTREAM_API_TOKEN_READS`` is true); with no token set, writes are refused. Both, and the
body limit, are checked before a body is read (``stream.api.door``).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Header, Path, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from pydantic import BaseModel, Field, field_validator
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stream import __version__
from stream.api.catalog import MAX_NAME_LENGTH, Catalog, clean_segment_name
from stream.api.door import FrontDoor
from stream.api.reads import MAX_USER_ID, UserReads, problem_document, unknown_user
from stream.feeds.erasure import request_erasure
from stream.ports import Sink
from stream.settings import Settings

_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
UserId = Annotated[
    str, Path(min_length=1, max_length=MAX_USER_ID, description="The user id (event key)")
]
# Canonical decimal only: "01", "+1", "1.0", " 1" and "1_0" are not segment 1 (or 10).
SegmentId = Annotated[
    str, Path(pattern=r"^(0|[1-9][0-9]{0,8})$", description="The segment id, in decimal")
]


class SegmentName(BaseModel):
    name: str = Field(
        min_length=1,
        max_length=MAX_NAME_LENGTH,
        examples=["weekend bargain hunters"],
        description="Plain text: trimmed and stored in NFC; no control, bidi-override or "
        "markup characters",
    )

    @field_validator("name")
    @classmethod
    def plain_text(cls, name: str) -> str:
        return clean_segment_name(name)


class ProblemDocument(BaseModel):
    type: str = "about:blank"
    title: str
    status: int
    detail: str
    instance: str


class SegmentRef(BaseModel):
    id: int
    name: str | None


class TagHeld(BaseModel):
    name: str
    score: float | None = Field(description="the predictive tag's probability now; None: a rule")
    entered_at_ms: int | None = Field(
        description="when the user entered the tag, in event time (epoch ms, to the second); "
        "None if entered before segstream kept it"
    )


class UserDocument(BaseModel):
    partition: int
    user_id: str
    segment: SegmentRef | None
    tags: list[TagHeld]
    seq: int
    last_event_ms: int
    evaluated_at_ms: int = Field(description="the partition's watermark, or the last event")
    model_version: int
    features: dict[str, float]


class Problem(Exception):
    """An error answered as a problem document."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def _problem(status: int, title: str, detail: str, path: str) -> JSONResponse:
    body = problem_document(status, title, detail, path)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status, headers, media_type="application/problem+json")


class _Measured:
    """Times every HTTP request by route template, method and status (a plain ASGI
    middleware: Starlette's ``BaseHTTPMiddleware`` costs more than the lookup it would time)."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app, self.histogram = app, histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), [500]

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            template = getattr(scope.get("route"), "path", "unmatched")
            self.histogram.labels(template, scope["method"], str(status[0])).observe(
                time.perf_counter() - started
            )


def request_histogram(registry: CollectorRegistry) -> Histogram:
    """The API's one metric (the dashboards' tests read its name here)."""
    return Histogram(
        "segstream_api_request_duration_seconds",
        "API requests by route template, method and status, and how long they took.",
        ["route", "method", "status"],
        buckets=_BUCKETS,
        registry=registry,
    )


def create_app(settings: Settings, catalog: Catalog | None = None) -> ASGIApp:
    """The application; ``catalog`` defaults to one on ``settings.redis_url``. Open reads of a
    user are answered beneath FastAPI (``stream.api.reads``), the rest by it."""
    cat = catalog or Catalog.connect(settings)
    registry = CollectorRegistry()
    latency = request_histogram(registry)

    producers: list[Sink] = []  # one, made at the first erasure, kept: a producer is costly

    making = threading.Lock()  # erasures run in worker threads

    def erase(user_id: str, by: str) -> str:
        with making:
            if not producers:
                from stream.wiring import kafka_sink

                producers.append(kafka_sink(settings))
        return request_erasure(settings.input_topic, user_id, by, "api", producers[0])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await asyncio.to_thread(cat.refresh)  # fail fast if Redis is unreachable
        task = asyncio.create_task(cat.refresh_forever())
        yield
        task.cancel()
        await cat.client.aclose()
        if cat.primary is not None:
            await cat.primary.aclose()
        for producer in producers:
            producer.close()

    app = FastAPI(
        title="segstream",
        version=__version__,
        summary="Users' segments and tags, segment names, erasure.",
        description="Writes need `Authorization: Bearer <SEGSTREAM_API_TOKEN>`, and so do reads "
        "when SEGSTREAM_API_TOKEN_READS is true.",
        lifespan=lifespan,
        # Off unless asked: their pages load Swagger UI and ReDoc from a public CDN.
        docs_url="/docs" if settings.api_docs else None,
        redoc_url="/redoc" if settings.api_docs else None,
    )

    # Added first, so inside the timing: refusals are measured too (route "unmatched").
    app.add_middleware(
        FrontDoor,
        token=settings.api_token,
        token_reads=settings.api_token_reads,
        max_body_bytes=settings.api_max_body_bytes,
    )
    app.add_middleware(_Measured, histogram=latency)

    @app.exception_handler(Problem)
    async def problem(request: Request, exc: Problem) -> JSONResponse:
        return _problem(exc.status, exc.title, exc.detail, request.url.path)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _problem(exc.status_code, str(exc.detail), str(exc.detail), request.url.path)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        # A bug: the server logs the traceback; the client gets a problem document.
        return _problem(500, "Internal Server Error", type(exc).__name__, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _problem(422, "Unprocessable Content", detail, request.url.path)

    @app.get(
        "/v1/users/{user_id}",
        tags=["users"],
        response_model=UserDocument,
        responses={404: {"description": "No state for this user", "model": ProblemDocument}},
    )
    async def get_user(user_id: UserId) -> Response:
        """The user's segment (id and name), tags with scores and entry times, features at the
        partition's watermark, seq, model version and last event time: ``segstream inspect``'s
        document."""
        doc = await cat.user(user_id)
        if doc is None:
            raise Problem(404, "Not Found", unknown_user(user_id))
        return Response(orjson.dumps(doc), media_type="application/json")  # as documented

    @app.delete("/v1/users/{user_id}", status_code=202, tags=["users"])
    async def erase_user(
        user_id: UserId, x_requested_by: Annotated[str | None, Header(max_length=256)] = None
    ) -> dict[str, Any]:
        """Erase the user: an erasure request is published on the input topic and applied by
        the user's consumer in order with its events (docs/contract.md, "Erasure")."""
        by = x_requested_by or "api"
        erase_id = await asyncio.to_thread(erase, user_id, by)
        return {"erase_id": erase_id, "user_id": user_id, "status": "accepted"}

    @app.get("/v1/segments", tags=["segments"])
    async def list_segments() -> dict[str, Any]:
        """Every segment of the current model: id, name, size, share, centroid (original
        units), the model version that created it and the segments merged into it."""
        version = cat.snapshot.version if cat.snapshot else 0
        return {"model_version": version, "segments": await cat.segments()}

    @app.put("/v1/segments/{segment}/name", tags=["segments"])
    async def name_segment(segment: SegmentId, body: SegmentName) -> dict[str, Any]:
        """Name a segment; the name stays while the segment id lives, across new models."""
        number = int(segment)
        if cat.snapshot is None or number not in cat.snapshot.segment_ids:
            raise Problem(404, "Not Found", f"the current model has no segment {number}")
        await cat.name_segment(number, body.name)
        return next(s for s in await cat.segments() if s["id"] == number)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app if settings.api_token_reads else UserReads(app, cat, latency)


def run_api(settings: Settings) -> int:
    """Serve the API until SIGTERM or SIGINT; 78 if Redis holds an earlier layout's keys."""
    import uvicorn

    from stream.connections import redis_client
    from stream.errors import DependencyError
    from stream.redis.layout import LayoutError, check_layout

    try:
        check_layout(redis_client(settings), settings.key_prefix, settings.input_topic)
    except (DependencyError, LayoutError) as exc:
        print(f"segstream api: cannot start: {exc}", file=sys.stderr)
        return 69 if isinstance(exc, DependencyError) else 78

    config = uvicorn.Config(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
        access_log=False,
    )
    server = uvicorn.Server(config)
    server.run()
    return 0
