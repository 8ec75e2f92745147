"""End to end: `segstream api` beside `segstream serve`, on real Kafka and Redis."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from stream.api.catalog import MISS_RESCAN_S
from stream.cli.users import inspect_user
from stream.feeds.simulator import encode, generate_events
from stream.settings import Settings
from tests.support.api import TOKEN, Api, start_api
from tests.support.servers import end_offsets, ordered_producer, publish, read_topic, redis_client
from tests.support.service import Service

pytestmark = [pytest.mark.kafka, pytest.mark.redis]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Api]]:
    client = redis_client()
    tmp = tmp_path_factory.mktemp("api")
    service = Service(
        tmp,
        SEGSTREAM_MAX_BATCH_RECORDS="500",
        SEGSTREAM_SNAPSHOT_EVERY_SAMPLES="300",
        SEGSTREAM_TRAIN_SAMPLE_PERMILLE="1000",
    )
    events = itertools.islice(generate_events(300, seed=8, days=30), 4000)
    publish(service.input_topic, [encode(e) for e in events])
    service.start()
    service.wait_for_offsets(client, end_offsets(service.input_topic))
    api = start_api(service, tmp / "api.log")
    yield service, api
    api.process.terminate()
    api.process.wait(timeout=30)
    service.cleanup(client)


def test_a_user_is_the_inspect_document_and_an_unknown_one_a_problem(
    deployment: tuple[Service, Api], client: redis.Redis
) -> None:
    service, api = deployment
    assert api.url.startswith("http://127.0.0.1:")  # loopback unless told otherwise
    states = service.states(client)
    # A user who holds a tag, so the tags are compared too (the stream gives some the vip tag).
    user = max(
        (u for u, s in states.items() if s.segment >= 0 and s.tags),
        key=lambda u: states[u].seq,
    )
    # The trainer may publish a model just after the last save; the API follows it within
    # its refresh period, so compare once both read the same model.
    deadline = time.monotonic() + 10
    while True:
        status, _, doc = api.call("GET", f"/v1/users/{user}")
        shown = inspect_user(Settings.from_env(service.env), user, client)
        if doc == shown or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status == 200
    assert doc == shown
    assert doc["segment"]["id"] == states[user].segment and doc["seq"] == states[user].seq
    assert doc["tags"], "the user holds a tag; the API must show it"
    # Each held tag was entered at the event time of the user's last change that added it.
    entered = {}
    for _, value in read_topic(service.output_topic):
        change = json.loads(value)
        if change.get("user_id") == user:
            for tag in change.get("tags_added", {}):
                entered[tag] = change["event_time_ms"] // 1000 * 1000
    assert {t["name"]: t["entered_at_ms"] for t in doc["tags"]} == {
        t["name"]: entered[t["name"]] for t in doc["tags"]
    }
    status, headers, problem = api.call("GET", "/v1/users/nobody-at-all")
    assert status == 404 and headers["content-type"] == "application/problem+json"
    assert problem["status"] == 404 and "nobody-at-all" in problem["detail"]
    status, headers, problem = api.call("GET", "/v1/users/" + "x" * 129)
    assert status == 422 and headers["content-type"] == "application/problem+json"
    assert api.call("HEAD", f"/v1/users/{user}")[0] == 405


def test_segments_have_sizes_and_analysts_name_them_with_the_token(
    deployment: tuple[Service, Api], client: redis.Redis
) -> None:
    service, api = deployment
    status, _, body = api.call("GET", "/v1/segments")
    assert status == 200 and body["model_version"] >= 1 and body["segments"]
    placed = Counter(s.segment for s in service.states(client).values() if s.segment >= 0)
    assert {s["id"]: s["size"] for s in body["segments"] if s["size"]} == dict(placed)
    assert sum(s["share"] for s in body["segments"]) == pytest.approx(1.0, abs=1e-5)
    for found in body["segments"]:  # lineage: when each was created, what merged into it
        assert 1 <= found["created_version"] <= body["model_version"]
        assert isinstance(found["merged_from"], list)
    segment = max(placed, key=lambda s: placed[s])
    path = f"/v1/segments/{segment}/name"
    assert api.call("PUT", path, {"name": "loyal"})[0] == 401
    assert api.call("PUT", path, {"name": "loyal"}, token="wrong")[0] == 401
    status, _, problem = api.call("PUT", path, {"name": ""}, token=TOKEN)
    assert status == 422 and "name" in problem["detail"]
    assert api.call("PUT", "/v1/segments/999/name", {"name": "x"}, token=TOKEN)[0] == 404
    status, _, named = api.call("PUT", path, {"name": "loyal"}, token=TOKEN)
    assert status == 200 and named["name"] == "loyal" and named["generated_name"]
    member = next(u for u, s in service.states(client).items() if s.segment == segment)
    assert api.call("GET", f"/v1/users/{member}")[2]["segment"]["name"] == "loyal"


def test_delete_erases_the_user_through_the_stream(
    deployment: tuple[Service, Api], client: redis.Redis
) -> None:
    service, api = deployment
    user = sorted(service.states(client))[0]
    assert api.call("DELETE", f"/v1/users/{user}")[0] == 401
    status, _, accepted = api.call("DELETE", f"/v1/users/{user}", token=TOKEN)
    assert status == 202 and accepted["erase_id"].startswith("erase-")
    service.wait_for_offsets(client, end_offsets(service.input_topic))
    assert api.call("GET", f"/v1/users/{user}")[0] == 404


def test_openapi_docs_and_request_metrics(deployment: tuple[Service, Api]) -> None:
    _, api = deployment
    status, _, spec = api.call("GET", "/openapi.json")
    assert status == 200
    assert {"/v1/users/{user_id}", "/v1/segments", "/v1/segments/{segment}/name"} <= set(
        spec["paths"]
    )
    assert "delete" in spec["paths"]["/v1/users/{user_id}"]
    # The docs pages load their scripts from a public CDN: off unless asked for.
    assert api.call("GET", "/docs")[0] == 404 and api.call("GET", "/redoc")[0] == 404
    api.call("GET", "/v1/users/nobody-at-all")
    metrics = api.call("GET", "/metrics")[2]
    assert (
        'segstream_api_request_duration_seconds_count{method="GET",'
        'route="/v1/users/{user_id}",status="404"}'
    ) in metrics


def test_reads_can_require_the_token_too(
    deployment: tuple[Service, Api], client: redis.Redis, tmp_path: Path
) -> None:
    service, open_api = deployment
    api = start_api(
        service, tmp_path / "api.log", SEGSTREAM_API_TOKEN_READS="true", SEGSTREAM_API_DOCS="true"
    )
    try:
        assert api.call("GET", "/v1/segments")[0] == 401
        assert api.call("GET", "/v1/segments", token=TOKEN)[0] == 200
        # The API's description and docs are reads too; probes and scrapes stay open.
        for path in ("/openapi.json", "/docs", "/redoc"):
            assert api.call("GET", path)[0] == 401, path
            assert api.call("GET", path, token=TOKEN)[0] == 200, path
        assert api.call("GET", "/healthz")[0] == 200 and api.call("GET", "/metrics")[0] == 200
        # Open reads of a user are answered beneath FastAPI (stream.api.reads); these go
        # through it: the same documents either way.
        user = sorted(service.states(client))[-1]
        assert api.call("GET", f"/v1/users/{user}")[0] == 401

        def answer(api: Api, path: str, token: str | None) -> tuple[int, str, Any]:
            status, headers, doc = api.call("GET", path, token=token)
            return status, headers["content-type"], doc

        for path in (f"/v1/users/{user}", "/v1/users/nobody-at-all"):
            deadline = time.monotonic() + 10  # both follow a new model within 2 s
            while (found := answer(api, path, TOKEN)) != answer(open_api, path, None):
                assert time.monotonic() < deadline, (found, answer(open_api, path, None))
                time.sleep(0.5)
    finally:
        api.process.terminate()
        api.process.wait(timeout=30)


def connect(api: Api, timeout_s: float) -> socket.socket:
    host, port = api.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout_s)


def raw_request(api: Api, head: bytes, body: bytes = b"", timeout_s: float = 1.0) -> bytes:
    """Send a request's head and part of its body as they are; the response's first bytes."""
    with connect(api, timeout_s) as conn:
        conn.sendall(head + b"\r\n")
        with contextlib.suppress(OSError):  # the API may close before taking it all
            conn.sendall(body)
        return conn.recv(65536)


def rss_kb(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


def test_a_large_body_is_refused_before_it_is_read(deployment: tuple[Service, Api]) -> None:
    _, api = deployment
    before = rss_kb(api.process.pid)
    fifty_mb = 50 * 1024 * 1024
    chunk = b"x" * (1024 * 1024)
    head = (
        b"PUT /v1/segments/1/name HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n" % fifty_mb
    )
    # Without a token: 401 within a second, whatever the body; with one: 413.
    started = time.monotonic()
    answer = raw_request(api, head, chunk)
    assert answer.startswith(b"HTTP/1.1 401 "), answer[:200]
    assert time.monotonic() - started < 1.0
    authorized = head + f"Authorization: Bearer {TOKEN}\r\n".encode()
    assert raw_request(api, authorized, chunk).startswith(b"HTTP/1.1 413 ")
    # A body sent in chunks, with no length to refuse it by, is cut off at the limit.
    chunked = authorized.replace(
        b"Content-Length: %d\r\n" % fifty_mb, b"Transfer-Encoding: chunked\r\n"
    )
    pieces = b"".join(b"%x\r\n%s\r\n" % (len(chunk[:8192]), chunk[:8192]) for _ in range(20))
    assert raw_request(api, chunked, pieces).startswith(b"HTTP/1.1 413 ")
    # Fifty megabytes sent whole (three times): the API answers, closes the connection and
    # reads none of it, so its memory stays where it was (measured: +0.4 MB).
    for _ in range(3):
        with connect(api, timeout_s=2) as conn:
            conn.sendall(head + b"\r\n")
            with contextlib.suppress(OSError):  # the API closes: the rest goes nowhere
                for _ in range(50):
                    conn.sendall(chunk)
    assert rss_kb(api.process.pid) - before < 4096, (before, rss_kb(api.process.pid))
    assert api.call("GET", "/healthz")[0] == 200


def test_the_token_must_come_as_a_bearer_token(deployment: tuple[Service, Api]) -> None:
    _, api = deployment
    path = "/v1/segments/999999/name"
    for header in (TOKEN, f"Basic {TOKEN}", f"Bearer{TOKEN}", "Bearer ", f"Bearer x{TOKEN}"):
        head = (
            f"PUT {path} HTTP/1.1\r\nHost: api\r\nAuthorization: {header}\r\n"
            "Content-Type: application/json\r\nContent-Length: 13\r\n"
        ).encode()
        assert raw_request(api, head, b'{"name":"x"}\n').startswith(b"HTTP/1.1 401 "), header
    head = (
        f"PUT {path} HTTP/1.1\r\nHost: api\r\nAuthorization: bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\nContent-Length: 13\r\n"
    ).encode()  # the scheme is case-insensitive; the segment does not exist
    assert raw_request(api, head, b'{"name":"x"}\n').startswith(b"HTTP/1.1 404 ")


def test_segment_ids_and_names_are_canonical(
    deployment: tuple[Service, Api], client: redis.Redis
) -> None:
    service, api = deployment
    segment = min(s["id"] for s in api.call("GET", "/v1/segments")[2]["segments"])
    for spelled in (f"0{segment}", f"+{segment}", f"{segment}.0", f"%20{segment}", f"{segment}_0"):
        status, _, problem = api.call(
            "PUT", f"/v1/segments/{spelled}/name", {"name": "x"}, token=TOKEN
        )
        assert status == 422, (spelled, problem)
    path = f"/v1/segments/{segment}/name"
    for bad in ("   ", "a\x00b", "tab\there", "evil\u202etxt.exe", "<b>big</b>", "a\u2066b"):
        status, _, problem = api.call("PUT", path, {"name": bad}, token=TOKEN)
        assert status == 422, (bad, problem)
    # Stored trimmed and in NFC: "e" + combining acute is "é".
    status, _, named = api.call("PUT", path, {"name": "  Cafe\u0301 regulars "}, token=TOKEN)
    assert status == 200 and named["name"] == "Caf\u00e9 regulars"
    stored = client.hget(f"{service.prefix}:{{models}}:segment-names", str(segment))
    assert stored == "Caf\u00e9 regulars".encode()


def test_a_saved_user_is_found_however_new_its_partition_and_named_as_inspect_does(
    tmp_path: Path, client: redis.Redis
) -> None:
    service = Service(
        tmp_path,
        SEGSTREAM_MAX_BATCH_RECORDS="500",
        SEGSTREAM_SNAPSHOT_EVERY_SAMPLES="300",
        SEGSTREAM_TRAIN_SAMPLE_PERMILLE="1000",
    )
    events = list(itertools.islice(generate_events(200, seed=9, days=30), 4000))
    users = sorted({e["user_id"] for e in events})
    first = set(users[:50])  # on partition 0; the others on 1-3 once the API is up
    producer = ordered_producer()

    def send(chosen: set[str], partition_of: dict[str, int]) -> None:
        for event in events:
            if event["user_id"] in chosen:
                key, value = encode(event)
                producer.send(
                    service.input_topic,
                    key=key,
                    value=value,
                    partition=partition_of[event["user_id"]],
                )
        producer.flush()

    api = None
    try:
        send(first, dict.fromkeys(first, 0))
        service.start()
        service.wait_for_offsets(client, end_offsets(service.input_topic))
        api = start_api(service, tmp_path / "api.log")
        assert api.call("GET", f"/v1/users/{min(first)}")[0] == 200  # it knows partition 0
        later = set(users) - first
        send(later, {u: 1 + i % 3 for i, u in enumerate(sorted(later))})
        service.wait_for_offsets(client, end_offsets(service.input_topic))
        # The promise: a saved user is found within MISS_RESCAN_S of its partition's first
        # save (a miss looks for new partitions at most that often); serve may save them all
        # sooner than that after the API's own first scan.
        time.sleep(MISS_RESCAN_S)
        stored = service.states(client)
        missing = [
            u for u in sorted(later) if u in stored and api.call("GET", f"/v1/users/{u}")[0] != 200
        ]
        assert not missing, f"{len(missing)} saved users answered 404: {missing[:5]}"

        # One name for a segment, whoever shows it: the analysts' once they gave one.
        user = next(u for u in sorted(stored) if stored[u].segment >= 0)
        segment = stored[user].segment
        path = f"/v1/segments/{segment}/name"
        assert api.call("PUT", path, {"name": "night owls"}, token=TOKEN)[0] == 200
        settings = Settings.from_env(service.env)
        shown = inspect_user(settings, user, client)
        assert shown is not None and shown["segment"] == {"id": segment, "name": "night owls"}
        assert api.call("GET", f"/v1/users/{user}")[2]["segment"] == shown["segment"]
    finally:
        producer.close()
        if api is not None:
            api.process.terminate()
            api.process.wait(timeout=30)
        service.cleanup(client)
