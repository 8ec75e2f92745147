"""The benchmarks' figures in one table, against the targets: reads bench/results/*.json (the
other scripts write them), prints a Markdown table and writes bench/results/report.json.

    .venv/bin/python bench/report.py
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from collections.abc import Callable
from typing import Any

from common import RESULTS

Row = tuple[str, str, str, bool | None]  # what, figure, target, met


def load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def core_rows(core: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    targets = {"defaults": 20.0, "live": 12.0}  # µs per event
    for name, m in core["median"].items():
        cpu, limit = m["cpu_us_per_event"], targets.get(name)
        target = f"≤ {limit:.0f} µs" if limit else ""
        met = cpu <= limit if limit else None
        rows.append((f"CPU per event in process, {name}", f"{cpu:.1f} µs", target, met))
    rescoring = core.get("us_per_rescoring")
    if rescoring is not None:
        rows.append(
            ("CPU per re-scoring in process", f"{rescoring:.1f} µs", "≤ 3 µs", rescoring <= 3)
        )
    return rows


def throughput_rows(found: dict[str, Any]) -> list[Row]:
    m = found["median"]
    rows: list[Row] = [
        ("bare kafka-python consume loop", f"{m['bare_kafka_python_eps']:,.0f} ev/s", "", None),
        ("bare confluent-kafka consume loop", f"{m['bare_confluent_eps']:,.0f} ev/s", "", None),
    ]
    for client in ("confluent_kafka", "kafka_python"):
        if f"serve_{client}_eps" not in m:
            continue
        name = client.replace("_", "-")
        ratio = m[f"serve_{client}_ratio"]
        rows += [
            (f"serve on {name}", f"{m[f'serve_{client}_eps']:,.0f} ev/s", "", None),
            (
                f"serve on {name}: CPU per event",
                f"{m[f'serve_{client}_cpu_us']:.1f} µs",
                "≤ 20 µs" if client == "confluent_kafka" else "",
                m[f"serve_{client}_cpu_us"] <= 20 if client == "confluent_kafka" else None,
            ),
            (f"serve on {name} / kafka-python loop", f"{ratio:.3f}", "≥ 0.25", ratio >= 0.25),
            (
                f"serve on {name} / confluent-kafka loop",
                f"{m[f'serve_{client}_ratio_confluent']:.3f}",
                "(information)",
                None,
            ),
        ]
        if f"serve_{client}_speedup" in m:
            speedup = m[f"serve_{client}_speedup"]
            rows.append((f"serve on {name} / baseline serve", f"{speedup:.1f}x", "", None))
    if "serve_live_cpu_us" in m:
        cpu = m["serve_live_cpu_us"]
        rows += [
            ("serve, live regime", f"{m['serve_live_eps']:,.0f} ev/s", "", None),
            ("serve, live regime: CPU per event", f"{cpu:.1f} µs", "≤ 12 µs", cpu <= 12),
        ]
    return rows


def latency_rows(found: dict[str, Any]) -> list[Row]:
    figure = (
        f"p50 {found['p50_ms']:.0f}, p99 {found['p99_ms']:.0f}, p99.9 {found['p999_ms']:.0f} ms"
    )
    what = f"latency, append to change acked, paced at {found['rate_eps']:,.0f} ev/s"
    rows: list[Row] = [(what, figure, "p99 ≤ 50 ms", found["p99_ms"] <= 50)]
    if "wall_clock" in found:
        wall = found["wall_clock"]
        figure = (
            f"p50 {wall['p50_ms']:.0f}, p99 {wall['p99_ms']:.0f}, p99.9 {wall['p999_ms']:.0f} ms"
        )
        what = "the same, event time on the wall clock (re-scorings at a real stream's pace)"
        rows.append((what, figure, "p99 ≤ 50 ms", wall["p99_ms"] <= 50))
    return rows


def scale_rows(found: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for row in found["rows"]:
        users = f"{row['users']:,} users"
        rows.append((f"CPU per event, {users}", f"{row['cpu_us_per_event']:.1f} µs", "", None))
        per_user = row["redis_bytes_per_user"]
        memory = f"Redis memory per user, {users}"
        rows.append((memory, f"{per_user:.0f} B", "≤ 256 B", per_user <= 256))
    growth = found["growth"]
    first, last = found["rows"][0]["users"], found["rows"][-1]["users"]
    what = f"CPU growth {first:,} → {last:,} users"
    rows.append((what, f"{growth:.2f}x", "≤ 1.3x", growth <= 1.3))
    return rows


def two_process_rows(found: dict[str, Any]) -> list[Row]:
    m = found["median"]
    figure = f"{m['two_cpu_us']:.1f} vs {m['one_cpu_us']:.1f} µs: {m['cpu_ratio']:.2f}x"
    return [("two processes, aggregate CPU per event", figure, "≤ 1.15x", m["cpu_ratio"] <= 1.15)]


def replay_rows(found: dict[str, Any]) -> list[Row]:
    m = found["median"]
    if "speedup_wall" not in m:
        return [("UCI replay", f"{m['head_wall_s']:.1f} s", "", None)]
    figure = f"{m['head_wall_s']:.1f} s vs {m['baseline_wall_s']:.1f} s: {m['speedup_wall']:.1f}x"
    return [("UCI replay vs the baseline commit", figure, "≥ 5x", m["speedup_wall"] >= 5)]


def api_rows(found: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for phase, m in found["median"].items():
        figure = (
            f"p50 {m['p50_ms']:.2f}, p99 {m['p99_ms']:.2f}, p99.9 {m['p999_ms']:.2f} ms "
            f"({m['server_share_within_5ms']:.1%} within 5 ms by the API's clock"
            + (
                f"; {m['api_cpu_ms_per_request']:.2f} ms CPU per request)"
                if "api_cpu_ms_per_request" in m
                else ")"
            )
        )
        what = f"API GET user at {found['rate']:,.0f}/s, serve {phase}"
        rows.append((what, figure, "p99 ≤ 5 ms", m["p99_ms"] <= 5))
    return rows


def evaluate_rows(found: dict[str, Any]) -> list[Row]:
    wall, peak = found["wall_s"], found["peak_worker_mb"]
    history = f"{found['users']:,} customers, {found['months']} months"
    return [
        (f"segstream evaluate, {history}: wall time", f"{wall:.0f} s", "≤ 300 s", wall <= 300),
        ("... its largest worker's memory", f"{peak:,.0f} MB", "≤ 1,024 MB", peak <= 1024),
    ]


SECTIONS: dict[str, Callable[[dict[str, Any]], list[Row]]] = {
    "core": core_rows,
    "throughput": throughput_rows,
    "latency": latency_rows,
    "scale": scale_rows,
    "two_processes": two_process_rows,
    "replay": replay_rows,
    "api": api_rows,
    "evaluate": evaluate_rows,
}


def main() -> None:
    rows: list[Row] = []
    missing = []
    for name, section in SECTIONS.items():
        found = load(name)
        if found is None:
            missing.append(name)
        else:
            rows += section(found)
    today = datetime.date.today().isoformat()
    print(f"segstream bench, {today}, {platform.machine()}, {os.cpu_count()} cores")
    print("\n| measure | figure | target | met |\n|---|---|---|---|")
    for what, figure, target, met in rows:
        mark = "" if met is None else ("yes" if met else "**no**")
        print(f"| {what} | {figure} | {target} | {mark} |")
    if missing:
        print(f"\nnot measured yet: {', '.join(missing)}")
    document = {"date": today, "cores": os.cpu_count(), "rows": rows, "missing": missing}
    (RESULTS / "report.json").write_text(json.dumps(document, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
