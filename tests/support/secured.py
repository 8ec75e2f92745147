"""The secured servers: the broker's SASL_SSL listener (SCRAM) that ``scripts/services.sh``
starts beside the plain one, and a Redis of the test's own with TLS, client certificates and a
password, both on the certificates services.sh made in ``$SERVICES_DIR/tls``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import redis

from tests.support.servers import missing, wait_for_ping

ROOT = Path(__file__).resolve().parents[2]
TLS = Path(os.environ.get("SERVICES_DIR", ROOT / ".services")) / "tls"
KAFKA_SECURE_BOOTSTRAP = f"127.0.0.1:{os.environ.get('KAFKA_SECURE_PORT', '9094')}"
KAFKA_USER, KAFKA_PASSWORD = "segstream", "segstream-test-secret"  # services.sh's test user


def tls_dir() -> Path:
    if not (TLS / "ca.pem").exists():
        missing("the test certificates", FileNotFoundError(TLS / "ca.pem"))
    return TLS


class SecuredRedis:
    """redis-server with TLS only (client certificates required) and ``requirepass``."""

    def __init__(self, log_dir: Path, password: str) -> None:
        if shutil.which("redis-server") is None:
            missing("redis-server", FileNotFoundError("not on PATH"), "run `make services-up`")
        tls = tls_dir()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"rediss://127.0.0.1:{self.port}/0"
        self.password = password
        self.process = subprocess.Popen(
            [
                "redis-server",
                *("--port", "0", "--tls-port", str(self.port), "--bind", "127.0.0.1"),
                *("--tls-cert-file", str(tls / "server.pem")),
                *("--tls-key-file", str(tls / "server.key")),
                *("--tls-ca-cert-file", str(tls / "ca.pem")),
                *("--tls-auth-clients", "yes", "--requirepass", password),
                *("--save", "", "--appendonly", "no", "--dir", str(log_dir)),
            ],
            stdout=(log_dir / "redis-tls.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        wait_for_ping(self.client(), f"TLS redis on port {self.port}")

    def client(self) -> redis.Redis:
        tls = tls_dir()
        return redis.Redis.from_url(
            self.url,
            password=self.password,
            ssl_ca_certs=str(tls / "ca.pem"),
            ssl_certfile=str(tls / "client.pem"),
            ssl_keyfile=str(tls / "client.key"),
            socket_timeout=5,
        )

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)
