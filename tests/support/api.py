"""`segstream api` as a subprocess beside a test's service, and calls to it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.service import Service

TOKEN = "s3cret-token"


@dataclass
class Api:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def call(
        self, method: str, path: str, body: object = None, token: str | None = None
    ) -> tuple[int, dict[str, str], Any]:
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                status, headers, raw = response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as error:
            status, headers, raw = error.code, dict(error.headers), error.read()
        is_json = headers.get("content-type", "").endswith("json")
        return status, headers, json.loads(raw) if is_json and raw else raw.decode()


def start_api(service: Service, log: Path, **env: str) -> Api:
    process = subprocess.Popen(
        [sys.executable, "-m", "stream", "api"],
        env={**service.env, "SEGSTREAM_API_PORT": "0", "SEGSTREAM_API_TOKEN": TOKEN, **env},
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = re.search(r"running on http://([\d.]+):(\d+)", log.read_text(errors="replace"))
        if found:
            return Api(process, f"http://{found.group(1)}:{found.group(2)}", log)
        assert process.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError(f"the API did not start:\n{log.read_text()}")
