"""``segstream model export`` / ``model import`` against the real Redis: a round trip keeps the
models exactly, versions never go backwards, and a foreign file gets a clear error."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stream.feeds.simulator import generate_events
from stream.redis.model_store import RedisModelStore
from tests.support.model import trained_model
from tests.support.servers import REDIS_URL, redis_client, unique

pytestmark = pytest.mark.redis


@pytest.fixture(scope="module")
def model_doc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = tmp_path_factory.mktemp("model") / "model.json"
    return trained_model(itertools.islice(generate_events(300, seed=3, days=40), 10_000), path)


@pytest.fixture
def prefix() -> Iterator[str]:
    client = redis_client()
    name = unique("model")
    yield name
    for key in client.scan_iter(f"{name}:*"):
        client.delete(key)


def segstream(prefix: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SEGSTREAM_REDIS_URL": REDIS_URL, "SEGSTREAM_KEY_PREFIX": prefix}
    return subprocess.run(
        [sys.executable, "-m", "stream", "model", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_model_round_trips_through_export_and_import(
    model_doc: dict[str, Any],
    prefix: str,
    tmp_path: Path,
) -> None:
    path = tmp_path / "in.json"
    path.write_text(json.dumps(model_doc))
    done = segstream(prefix, "import", str(path))
    assert done.returncode == 0, done.stderr
    assert f"v{model_doc['snapshot']['version']}" in done.stdout
    exported = segstream(prefix, "export")
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout) == model_doc
    store = RedisModelStore(redis_client(), prefix)
    assert {m.tag for m in store.load_tags().values() if m.ready} == {"churn_risk", "buys_soon"}


def test_importing_over_a_newer_model_publishes_above_it(
    model_doc: dict[str, Any],
    prefix: str,
    tmp_path: Path,
) -> None:
    newer = json.loads(json.dumps(model_doc))
    newer["snapshot"]["version"] += 5
    newer["snapshot"]["means"][0] += 1.0
    for name, doc in (("newer", newer), ("older", model_doc)):
        (tmp_path / name).write_text(json.dumps(doc))
    assert segstream(prefix, "import", str(tmp_path / "newer")).returncode == 0
    assert segstream(prefix, "import", str(tmp_path / "older")).returncode == 0
    exported = json.loads(segstream(prefix, "export").stdout)
    bumped = newer["snapshot"]["version"] + 1
    assert exported["snapshot"] == {**model_doc["snapshot"], "version": bumped}
    assert exported["trainer"]["model_version"] == bumped  # a trainer resumes above it too
    # The same model again is not a new version.
    out = tmp_path / "again.json"
    assert segstream(prefix, "export", "--out", str(out)).returncode == 0
    assert segstream(prefix, "import", str(out)).returncode == 0
    assert json.loads(segstream(prefix, "export").stdout)["snapshot"]["version"] == bumped


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"format": "segstream-model", "version": 99}, "reads version 1"),
        ({"format": "something-else"}, "not a segstream-model document"),
        ({"format": "segstream-model", "version": 1, "snapshot": {"version": 1}}, "damaged"),
    ],
)
def test_a_foreign_file_is_refused_clearly(
    doc: dict[str, Any],
    message: str,
    prefix: str,
    tmp_path: Path,
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    done = segstream(prefix, "import", str(path))
    assert done.returncode == 2 and message in done.stderr
    assert "Traceback" not in done.stderr
    assert redis_client().exists(f"{prefix}:{{models}}:segments") == 0


def test_exporting_with_no_model_published_says_so(prefix: str) -> None:
    done = segstream(prefix, "export")
    assert done.returncode == 2 and "no segment model is published" in done.stderr
