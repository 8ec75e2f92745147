"""The API's front door: who may ask, and how much they may send, before anything is read.

FastAPI reads and parses a request's body before it resolves the route's dependencies, so a
token check written as a dependency ran after an unauthenticated client had made the API hold
its whole body (a 300 MB ``PUT`` took the process to 1 GB and answered 422, not 401). This plain
ASGI layer decides from the method, path and headers alone:

- a write (any method but GET, HEAD, OPTIONS), and with ``SEGSTREAM_API_TOKEN_READS`` every
  request but ``/healthz`` and ``/metrics``, needs ``Authorization: Bearer <token>``: else 401
  (403 for a write when no token is set), before a byte of the body is read;
- a body larger than ``SEGSTREAM_API_MAX_BODY_BYTES`` is refused with 413: at once when its
  ``Content-Length`` says so, else as soon as that many bytes have arrived.

An admitted body is read here (it is small) and handed to the application whole.
"""

from __future__ import annotations

import hmac
from typing import Final

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stream.api.reads import problem_document

READS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
ALWAYS_OPEN: Final = frozenset({"/healthz", "/metrics"})  # probes and scrapes: no user data


def bearer_token(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The token of an ``Authorization: Bearer <token>`` header (the scheme in any case, as
    RFC 9110 says), or None if there is no such header or another scheme."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
            return None
    return None


class FrontDoor:
    """Refuses unauthenticated and oversized requests before the application reads them."""

    def __init__(self, app: ASGIApp, token: str, token_reads: bool, max_body_bytes: int) -> None:
        self.app, self.token = app, token.encode()
        self.token_reads, self.max_body_bytes = token_reads, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        write = method not in READS
        if write or (self.token_reads and path not in ALWAYS_OPEN):
            if write and not self.token:
                detail = "writes are disabled: SEGSTREAM_API_TOKEN is unset"
                await _refuse(send, 403, "Forbidden", detail, path)
                return
            given = bearer_token(headers)
            if given is None or not hmac.compare_digest(given, self.token):
                detail = "a valid token is required: Authorization: Bearer <token>"
                await _refuse(send, 401, "Unauthorized", detail, path)
                return
        length = _content_length(headers)
        if length is not None and length > self.max_body_bytes:
            await _refuse(send, 413, "Content Too Large", self._too_large(length), path)
            return
        if not write:  # GET and friends have no body worth reading
            await self.app(scope, receive, send)
            return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await _refuse(send, 413, "Content Too Large", self._too_large(None), path)
                return
        await self.app(scope, _replay(bytes(body), receive), send)

    def _too_large(self, length: int | None) -> str:
        size = f"{length} bytes" if length is not None else "the body"
        return f"{size} is over SEGSTREAM_API_MAX_BODY_BYTES ({self.max_body_bytes} bytes)"


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before we see it
    return None


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives ``body`` in one message, then waits on the real one (for the
    client's disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


async def _refuse(send: Send, status: int, title: str, detail: str, path: str) -> None:
    content = orjson.dumps(problem_document(status, title, detail, path))
    headers = [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(content)).encode()),
        (b"connection", b"close"),  # the unread body is not drained: the connection ends
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
