"""Latency of `segstream api`'s GET /v1/users/{id} at a paced rate, with the consumers running.

Point queries for random shoppers at ``--rate`` requests per second (default 1,000) over
keep-alive connections on loopback, ``--seconds`` per phase, while a `segstream serve` works
on the same Redis: while it catches up on a backlog of the bench stream (20,000 shoppers:
serve takes all the CPU it can get, the worst case on a 2-core machine), once it is caught up
and idle, and while it follows a live stream paced at ``--live-rate`` events per second
(measured from a few seconds after the stream starts). The busy and live phases are measured
twice, in turns going first: the API reading the consumers' Redis, and reading a replica of it
(``SEGSTREAM_API_REDIS_URL``, started here if `redis-server` is at hand). Each request's
latency runs from when it was due to be sent to its response read, so a client that falls
behind counts the wait too; the API's own histogram gives its share within 5 ms, and /proc its
CPU per request. Prints p50, p99 and p99.9 per phase (medians over ``--runs``); writes
bench/results/api.json.

    make services-up && .venv/bin/python bench/api.py [--rate 1000 --seconds 15 --runs 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import redis
from common import (
    REDIS_URL,
    RESULTS,
    bench_messages,
    cpu_seconds,
    create_topic,
    produce,
    running_serve,
    serve_env,
    wait_until,
)
from latency import paced

from stream.feeds.simulator import user_id

CONNECTIONS = 4  # client processes, one keep-alive connection each
LIVE_WARMUP_S = 3.0


@contextmanager
def running_api(env: dict[str, str], log_path: Path) -> Iterator[tuple[int, int]]:
    """A `segstream api` process on a free port; yields the port and its pid."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "stream", "api"],
            env={**env, "SEGSTREAM_API_PORT": "0", "SEGSTREAM_LOG_LEVEL": "INFO"},
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                text = log_path.read_text(errors="replace")
                found = re.search(r"running on http://[\d.]+:(\d+)", text)
                if found:
                    break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the API did not start; see {log_path}")
                time.sleep(0.05)
            yield int(found.group(1)), process.pid
        finally:
            process.terminate()
            process.wait(timeout=30)


def _worker(
    port: int, users: int, rate: float, total: int, offset: int, started: float
) -> tuple[list[float], dict[int, int]]:
    """Every ``CONNECTIONS``-th request of the schedule, from ``offset``, on one connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    picker = random.Random(offset)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    for n in range(offset, total, CONNECTIONS):
        due = started + n / rate
        wait = due - time.time()
        if wait > 0:
            time.sleep(wait)
        connection.request("GET", f"/v1/users/{user_id(picker.randrange(users))}")
        response = connection.getresponse()
        response.read()
        latencies.append((time.time() - due) * 1000)
        statuses[response.status] = statuses.get(response.status, 0) + 1
    connection.close()
    return latencies, statuses


def load(port: int, users: int, rate: float, seconds: float) -> tuple[list[float], dict[int, int]]:
    """Paced GETs from ``CONNECTIONS`` processes (no client shares a GIL with another);
    (latencies in ms, count per status)."""
    started, total = time.time() + 0.5, int(rate * seconds)
    jobs = [(port, users, rate, total, i, started) for i in range(CONNECTIONS)]
    with multiprocessing.get_context("fork").Pool(CONNECTIONS) as pool:
        results = pool.starmap(_worker, jobs)
    latencies = [ms for found, _ in results for ms in found]
    statuses: dict[int, int] = {}
    for _, counts in results:
        for status, count in counts.items():
            statuses[status] = statuses.get(status, 0) + count
    return latencies, statuses


def server_buckets(port: int) -> dict[float, float]:
    """The API's cumulative request-duration buckets for GET /v1/users/{user_id}, by bound."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    found: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("segstream_api_request_duration_seconds_bucket{") and (
            'route="/v1/users/{user_id}"' in line
        ):
            bound = float(line.split('le="', 1)[1].split('"', 1)[0])
            found[bound] = found.get(bound, 0) + float(line.rsplit(" ", 1)[1])
    return found


def measured(
    phase: str, api: tuple[int, int], args: argparse.Namespace, saved: Callable[[], int]
) -> dict[str, Any]:
    port, pid = api
    before, server_before, cpu_before = saved(), server_buckets(port), cpu_seconds(pid)
    latencies, statuses = load(port, args.users, args.rate, args.seconds)
    cpu = cpu_seconds(pid) - cpu_before
    server = {b: n - server_before.get(b, 0) for b, n in server_buckets(port).items()}
    p50, p99, p999 = np.percentile(latencies, [50, 99, 99.9]).tolist()
    found = {
        "p50_ms": p50,
        "p99_ms": p99,
        "p999_ms": p999,
        "requests": len(latencies),
        "statuses": statuses,
        "serve_events_meanwhile": saved() - before,
        # The API's own view (its histogram): the share of requests it answered within 5 ms.
        "server_share_within_5ms": server.get(0.005, 0) / max(server.get(float("inf"), 0), 1),
        # The API process's CPU time (every thread, /proc) per request served.
        "api_cpu_ms_per_request": cpu * 1000 / max(len(latencies), 1),
    }
    print(
        f"  {phase}: {len(latencies) / args.seconds:,.0f} req/s, p50 {p50:.2f} ms, "
        f"p99 {p99:.2f} ms, p99.9 {p999:.2f} ms; statuses {statuses}; serve saved "
        f"{found['serve_events_meanwhile']:,} events meanwhile; the API answered "
        f"{found['server_share_within_5ms']:.2%} within 5 ms by its own clock, using "
        f"{found['api_cpu_ms_per_request']:.2f} ms of CPU per request"
    )
    return found


@contextmanager
def replica_of(url: str) -> Iterator[str | None]:
    """A Redis replica of ``url`` on a free loopback port (None without redis-server)."""
    if shutil.which("redis-server") is None:
        yield None
        return
    primary = redis.Redis.from_url(url)
    host, port = (
        primary.connection_pool.connection_kwargs["host"],
        primary.connection_pool.connection_kwargs["port"],
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    where_to = tempfile.mkdtemp(prefix="segstream-replica-")  # its copy of the data set
    process = subprocess.Popen(
        [
            "redis-server",
            "--dir",
            where_to,
            "--port",
            str(free),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--replicaof",
            str(host),
            str(port),
        ],
        stdout=subprocess.DEVNULL,
    )
    replica = redis.Redis(port=free)
    try:
        wait_until(lambda: _link_up(replica), 120, "the replica to sync")
        yield f"redis://127.0.0.1:{free}/0"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _link_up(replica: redis.Redis) -> bool:
    try:
        return replica.info("replication").get("master_link_status") == "up"
    except redis.RedisError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=15.0, help="per phase")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--live-rate", type=float, default=500.0, help="events per second")
    parser.add_argument(
        "--serve-nice",
        type=int,
        default=0,
        help="run serve at this lower CPU priority (nice), as on hosts where the API has its own",
    )
    args = parser.parse_args()
    messages = bench_messages(10**6, args.users)  # every event of the shoppers (~225,000)
    # The rest is the live stream: enough for its phases and the warm-up, with room to spare.
    backlog = len(messages) - int(args.live_rate * (args.seconds * 2.5 + LIVE_WARMUP_S))
    store = redis.Redis.from_url(REDIS_URL)
    log_dir = Path(tempfile.mkdtemp(prefix="segstream-api-"))
    runs: list[dict[str, dict[str, Any]]] = []
    with replica_of(REDIS_URL) as replica:
        sources = {"primary": "", **({"replica": replica} if replica else {})}
        for run in range(args.runs):
            topic = f"api-{uuid.uuid4().hex[:8]}"
            create_topic(topic)
            produce(topic, messages[:backlog])
            print(f"run {run + 1}:")
            found: dict[str, dict[str, Any]] = {}
            with (
                running_serve(topic, log_dir, f"api-serve-{run}", niceness=args.serve_nice) as (
                    serve,
                ),
                ExitStack() as apis,
            ):
                saved = partial(serve.saved, store)
                wait_until(lambda s=saved: s() >= 20_000, 600, "serve to save 20,000 events")
                env = serve_env(topic, serve.prefix)
                ports = {
                    source: apis.enter_context(
                        running_api(
                            {**env, "SEGSTREAM_API_REDIS_URL": url},
                            log_dir / f"api-{run}-{source}.log",
                        )
                    )
                    for source, url in sources.items()
                }
                time.sleep(2.5)  # the first model and partition refresh, the replica's catch-up
                # Each source goes first in turn: the first phase meets serve's first bursts.
                turn = run % len(ports)
                order = [*list(ports)[turn:], *list(ports)[:turn]]
                for source, port in ((s, ports[s]) for s in order):
                    found[f"busy, reads on the {source}"] = measured(
                        f"serve catching up, reads on the {source}", port, args, saved
                    )
                wait_until(lambda s=saved: s() >= backlog, 900, "serve to catch up")
                found["idle, reads on the primary"] = measured(
                    "serve idle, reads on the primary", ports["primary"], args, saved
                )
                pacer = threading.Thread(
                    target=paced, args=(topic, messages[backlog:], args.live_rate), daemon=True
                )
                pacer.start()
                time.sleep(LIVE_WARMUP_S)  # the pacer connects, then sends at its pace
                for source, port in ((s, ports[s]) for s in order):
                    found[f"live, reads on the {source}"] = measured(
                        f"serve following {args.live_rate:,.0f} ev/s, reads on the {source}",
                        port,
                        args,
                        saved,
                    )
                pacer.join()
            runs.append(found)
    median = {
        phase: {
            k: statistics.median(r[phase][k] for r in runs)
            for k in (
                "p50_ms",
                "p99_ms",
                "p999_ms",
                "server_share_within_5ms",
                "api_cpu_ms_per_request",
            )
        }
        for phase in runs[0]
    }
    print(f"medians of {args.runs} runs at {args.rate:,.0f} requests/s:")
    for phase, m in median.items():
        print(
            f"  {phase}: p50 {m['p50_ms']:.2f} ms, p99 {m['p99_ms']:.2f} ms, "
            f"p99.9 {m['p999_ms']:.2f} ms; {m['server_share_within_5ms']:.2%} within 5 ms "
            f"by the API's clock; {m['api_cpu_ms_per_request']:.2f} ms CPU per request"
        )
    RESULTS.mkdir(exist_ok=True)
    document = {
        "rate": args.rate,
        "live_rate": args.live_rate,
        "seconds": args.seconds,
        "median": median,
        "runs": runs,
    }
    (RESULTS / "api.json").write_text(json.dumps(document, indent=1))


if __name__ == "__main__":
    main()
