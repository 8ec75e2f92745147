"""The floor plan holds: each wing of ``stream/`` imports only what its ``__init__`` says, the
pure core imports nothing of ``stream``, no module imports itself back through others, and
``stream/`` keeps at most a dozen modules flat at its top."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[1]

# What each wing may import of segstream, besides itself and ``operators`` (the top-level
# modules' own arrows are checked by the circle test). None: anything.
ALLOWED: dict[str, set[str] | None] = {
    "kafka": {"ports", "errors", "settings", "connections"},
    "redis": {"ports", "errors"},
    "twins": {"ports", "errors"},
    "feeds": {"ports", "errors", "settings", "connections"},
    "models": {"ports", "errors", "metrics"},
    "loop": {"ports", "errors", "metrics", "models"},
    "evaluation": {"ports", "errors", "settings", "feeds", "twins", "models", "replay"},
    "api": {
        "",
        "ports",
        "errors",
        "settings",
        "connections",
        "metrics",
        "redis",
        "feeds",
        "wiring",
    },
    "cli": None,
}


def _modules() -> Iterator[tuple[str, Path]]:
    for package in ("stream", "operators"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            yield name, path


def _imports(path: Path) -> set[str]:
    """Every segstream module ``path`` imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m.split(".")[0] in ("stream", "operators")}


MODULES = dict(_modules())
GRAPH = {name: {m for m in _imports(path) if m in MODULES} for name, path in MODULES.items()}


def _wing(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_each_wing_imports_only_what_it_may() -> None:
    wrong = []
    for module, imported in GRAPH.items():
        if not module.startswith("stream.") or _wing(module) not in ALLOWED:
            continue
        wing = _wing(module)
        allowed = ALLOWED[wing]
        if allowed is None:
            continue
        for target in imported:
            if target.startswith("operators") or _wing(target) == wing:
                continue
            if target == "stream" and "" in allowed:
                continue
            if _wing(target) not in allowed or target == "stream":
                wrong.append(f"{module} -> {target}")
    assert not wrong, wrong


def test_the_pure_core_imports_nothing_of_the_service() -> None:
    leaks = [
        f"{m} -> {t}"
        for m, ts in GRAPH.items()
        if m.startswith("operators")
        for t in ts
        if t.startswith("stream")
    ]
    assert not leaks, leaks


def test_no_import_circles() -> None:
    """Tarjan's strongly connected components: every one must be a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in GRAPH[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not circles, circles


def test_at_most_a_dozen_modules_are_left_flat_in_stream() -> None:
    flat = sorted(p.name for p in (ROOT / "stream").glob("*.py"))
    assert len(flat) <= 12, flat


def test_every_wing_says_what_it_holds_and_may_import() -> None:
    for init in sorted((ROOT / "stream").glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "Imports" in doc or "import" in doc, init
