"""The tables of docs/benchmarks.md, written from a results file.

    update_docs(Path("docs/benchmarks.md"), results)

Only the text between `<!-- bench:tables -->` and `<!-- /bench:tables -->` is replaced, so the
prose around the tables (what the numbers mean, what was changed because of them) stays as
written. A scenario that did not run is listed as "not measured" with its reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.stats import Row

__all__ = ["BEGIN", "END", "render", "update_docs"]

BEGIN = "<!-- bench:tables -->"
END = "<!-- /bench:tables -->"


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.1f} ms" if value < 100 else f"{value:.0f} ms"
    return f"{value:g} {unit}"


def _verdict(row: Row) -> str:
    if row.met is None:
        return ""
    return "met" if row.met else "**missed**"


def _table(rows: list[tuple[Row, float | None, float | None]]) -> list[str]:
    lines = [
        "| measured | median | p95 | floor (ideal) | target | | others' CPU meanwhile | reference loop |",
        "| --- | ---: | ---: | --- | --- | --- | ---: | ---: |",
    ]
    for row, foreign, speed in rows:
        floor = _number(row.floor, row.unit)
        if row.floor_note:
            floor = f"{floor} ({row.floor_note})" if floor else row.floor_note
        load = "" if foreign is None else f"{foreign:.2f} cores"
        lines.append(
            f"| {row.name} | {_number(row.median, row.unit)} | {_number(row.p95, row.unit)} | {floor} | "
            f"{row.target or ''} | {_verdict(row)} | {load} | {'' if speed is None else f'{speed:.0f} ms'} |"
        )
    return lines


def _cpu_table(scenarios: dict[str, Any]) -> list[str]:
    """CPU ms per request by process, where the scenarios measured it."""
    columns: list[tuple[str, dict[str, float]]] = []
    passthrough = scenarios.get("bridge_passthrough", {}).get("details", {})
    if "concurrency_8" in passthrough:
        columns.append(
            ("bridge passthrough, concurrency 8 (per request)", passthrough["concurrency_8"]["cpu_ms_per_request"])
        )
    throughput = scenarios.get("router_throughput", {}).get("details", {})
    for key, label in (
        ("direct_cpu_ms_per_request", "fused, direct (per fused request)"),
        ("through_bridges_cpu_ms_per_request", "fused, through bridges (per fused request)"),
    ):
        if key in throughput:
            columns.append((label, throughput[key]))
    if not columns:
        return []
    processes = list(dict.fromkeys(name for _, cpu in columns for name in cpu))
    lines = [
        "### CPU per request, by process (ms)",
        "",
        "| process | " + " | ".join(label for label, _ in columns) + " |",
        "| --- |" + " ---: |" * len(columns),
    ]
    for name in processes:
        cells = [f"{cpu[name]:.2f}" if name in cpu else "" for _, cpu in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return ["", *lines]


def render(results: dict[str, Any]) -> str:
    scenarios: dict[str, Any] = results["scenarios"]
    rows = [
        (
            Row.model_validate(r),
            s.get("foreign_load_cores", {}).get("during"),
            s.get("reference_loop_ms", {}).get("before"),
        )
        for s in scenarios.values()
        for r in s.get("rows", [])
    ]
    timing = [r for r in rows if r[0].unit != "MB"]
    memory = [r for r in rows if r[0].unit == "MB"]
    lines = [
        f"Measured {results['date']} on {results['machine']} (Python {results['python']}) with "
        f"`{results['command']}`. Raw results: [`{results['file']}`](../{results['file']}).",
        "",
        "### Time and throughput",
        "",
        *_table(timing),
        "",
        "### Resident memory (psutil RSS)",
        "",
        *_table(memory),
        *_cpu_table(scenarios),
    ]
    breakdown = scenarios.get("router_latency", {}).get("details", {}).get("breakdown_ms")
    if breakdown:
        lines += [
            "",
            "### One fused request, phase by phase (median over the runs of the latency scenario)",
            "",
            "| stretch | median |",
            "| --- | ---: |",
            *(f"| {name} | {ms:.1f} ms |" for name, ms in breakdown.items()),
        ]
    missing = {name: s["error"] for name, s in scenarios.items() if "error" in s}
    if missing:
        lines += ["", *(f"- `{name}`: not measured: {reason}" for name, reason in missing.items())]
    return "\n".join(lines)


def update_docs(path: Path, results: dict[str, Any]) -> None:
    text = path.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{path} has no {BEGIN} ... {END} block to fill")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{BEGIN}\n{render(results)}\n{END}{tail}")
