"""operators/ is the functional core: it must not reach I/O or the shell."""

from __future__ import annotations

import ast
from pathlib import Path

FORBIDDEN = {
    "stream",
    "redis",
    "kafka",
    "confluent_kafka",
    "prometheus_client",
    "socket",
    "requests",
    "http",
    "urllib",
    "time",
    "random",
    "threading",
    "subprocess",
    "os",
}


def test_operators_import_no_io_clock_or_randomness() -> None:
    offenders = []
    for path in Path(__file__).parents[2].joinpath("operators").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_operators_never_read_the_wall_clock() -> None:
    for path in Path(__file__).parents[2].joinpath("operators").glob("*.py"):
        source = path.read_text()
        assert ".now(" not in source and "utcnow" not in source, path.name
