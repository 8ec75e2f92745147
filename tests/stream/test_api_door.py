"""The API's front door and the segment names it lets in: pure parts, no servers."""

from __future__ import annotations

import asyncio

import pytest
from starlette.types import Message, Receive, Scope, Send

from stream.api.catalog import clean_segment_name
from stream.api.door import FrontDoor, bearer_token


def test_only_a_bearer_token_is_a_token() -> None:
    def token(value: bytes) -> bytes | None:
        return bearer_token([(b"content-type", b"application/json"), (b"authorization", value)])

    assert (
        token(b"Bearer s3cret") == token(b"bearer s3cret") == token(b"BEARER  s3cret ") == b"s3cret"
    )
    for refused in (b"s3cret", b"Basic s3cret", b"Bearer", b"Bearer ", b"Bearers3cret"):
        assert token(refused) is None, refused
    assert bearer_token([]) is None


@pytest.mark.parametrize(
    ("given", "stored"),
    [("  loyal  ", "loyal"), ("Cafe\u0301", "Caf\u00e9"), ("Bits & Bobs", "Bits & Bobs")],
)
def test_names_are_stored_trimmed_and_in_nfc(given: str, stored: str) -> None:
    assert clean_segment_name(given) == stored


@pytest.mark.parametrize(
    "name", [" \t ", "a\x00b", "line\nbreak", "evil\u202etxt", "a\u2066b", "<script>", "x\u2028y"]
)
def test_names_with_control_bidi_or_markup_characters_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        clean_segment_name(name)


def call(
    door: FrontDoor, method: str, headers: list[tuple[bytes, bytes]], body: list[bytes]
) -> tuple[int, bytes, int]:
    """(status, body, bytes of the request body the door read) of one request."""
    scope: Scope = {"type": "http", "method": method, "path": "/v1/x", "headers": headers}
    parts = [*body]
    read = [0]

    async def receive() -> Message:
        chunk = parts.pop(0) if parts else b""
        read[0] += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(parts)}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    asyncio.run(door(scope, receive, send))
    return sent[0]["status"], sent[1]["body"], read[0]


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    message = await receive()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": message["body"]})


def test_the_door_refuses_before_it_reads_and_passes_small_bodies_whole() -> None:
    door = FrontDoor(echo, token="s3cret", token_reads=False, max_body_bytes=10)
    auth = (b"authorization", b"Bearer s3cret")
    # No token: refused with no byte read, whatever length is announced.
    status, _, read = call(door, "PUT", [(b"content-length", b"99999999")], [b"x" * 100])
    assert (status, read) == (401, 0)
    status, _, read = call(door, "PUT", [auth, (b"content-length", b"11")], [b"x" * 11])
    assert (status, read) == (413, 0)
    # No length: read up to the limit, then refused.
    status, _, read = call(door, "PUT", [auth], [b"x" * 6, b"x" * 6, b"x" * 100])
    assert status == 413 and read == 12
    # Within the limit: the application gets the body in one piece.
    status, body, _ = call(door, "PUT", [auth], [b"abc", b"def"])
    assert (status, body) == (200, b"abcdef")
    # Reads are open unless configured otherwise; writes with no token set are forbidden.
    assert call(door, "GET", [], [])[0] == 200
    closed = FrontDoor(echo, token="", token_reads=False, max_body_bytes=10)
    assert call(closed, "DELETE", [auth], [])[0] == 403
    guarded = FrontDoor(echo, token="s3cret", token_reads=True, max_body_bytes=10)
    assert call(guarded, "GET", [], [])[0] == 401
    assert call(guarded, "GET", [auth], [])[0] == 200
