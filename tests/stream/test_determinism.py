"""A replay gives the same answers in any process: every output of the processor on a fixed
stream (changes, memberships, stored records, labels, due times) is the same whatever the
process's string hash seed, which orders Python's sets of user ids."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def outputs(seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": seed}
    command = [sys.executable, "bench/outputs.py", "--events", "12000", "--users", "1500"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_outputs_do_not_depend_on_the_hash_seed() -> None:
    first, second = outputs("1"), outputs("2")
    assert "segment-changes" in first and "state:" in first
    assert first == second
