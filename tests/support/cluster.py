"""The local Redis Cluster of ``scripts/services.sh``: a master killed (kill -9) and its
replica's takeover awaited, then the killed node started again, as a replica."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import redis
from redis.cluster import RedisCluster

from tests.support.servers import CLUSTER_PORT

ROOT = Path(__file__).resolve().parents[2]
NODES = range(CLUSTER_PORT, CLUSTER_PORT + 6)


def _node_dir() -> Path:
    return Path(os.environ.get("SERVICES_DIR", ROOT / ".services")) / "cluster"


def _master_of(slot: int, exclude: int) -> int | None:
    """The port of the master serving ``slot``, as a surviving node sees it (None: none)."""
    for port in NODES:
        if port == exclude:
            continue
        try:
            with redis.Redis(port=port, socket_timeout=1) as node:
                ranges = node.execute_command("CLUSTER SLOTS")
        except redis.RedisError:
            continue
        for first, last, master, *_ in ranges:
            if first <= slot <= last:
                return int(master[1])
    return None


def fail_over(client: RedisCluster, key: str, timeout_s: float = 30) -> int:
    """kill -9 the master serving ``key``'s slot; returns once its replica serves the slot
    (the killed node's port is returned: start it again with ``rejoin``)."""
    slot = client.keyslot(key)
    port = int(client.get_node_from_key(key).port)
    os.kill(int((_node_dir() / f"{port}.pid").read_text()), signal.SIGKILL)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        master = _master_of(slot, exclude=port)
        if master is not None and master != port:
            return port
        time.sleep(0.1)
    raise AssertionError(f"no replica took over slot {slot} from {port}")


def rejoin(port: int, timeout_s: float = 60) -> None:
    """Start a killed node again; it rejoins as a replica of the master that replaced it, and
    this returns once it has synchronised."""
    subprocess.run(
        [ROOT / "scripts/services.sh", "cluster-node", str(port)], check=True, timeout=30
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with redis.Redis(port=port, socket_timeout=1) as node:
                info = node.info("replication")
            if info.get("role") == "slave" and info.get("master_link_status") == "up":
                return
        except redis.RedisError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"node {port} did not rejoin as a replica")
