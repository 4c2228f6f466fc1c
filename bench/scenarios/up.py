"""`fusionkit up`: from the command to its ready banner, and what each of its processes holds in memory.

The banner is printed once every bridge and the router answered `/health`. Output goes to a
file, not a pipe: nobody reads a pipe after the banner, and a full pipe would block `up`.
Resident memory (psutil RSS) is taken per process right after the banner.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.procs import free_port, rss_mb, stop
from bench.scenarios.common import Settings, upstream
from bench.stats import Result, Row

__all__ = ["up_cold_start"]

READY = "FusionKit is ready"


def _endpoints(count: int, base: str | None) -> list[dict[str, Any]]:
    if base is None:
        return [{"id": f"m{i}", "provider": "mock", "model": f"mock-{i}"} for i in range(count)]
    return [
        {"id": f"m{i}", "provider": "openai-compatible", "model": "bench", "base_url": f"{base}/m{i}/v1"}
        for i in range(count)
    ]


def _kind(proc: psutil.Process, root: int) -> str:
    if proc.pid == root:
        return "supervisor"
    command = proc.cmdline()
    if "serve-endpoint" in command:
        return "bridge"
    return "router" if "serve" in command else "other"


def _one_start(workdir: Path, endpoints: list[dict[str, Any]]) -> tuple[float, dict[str, list[float]]]:
    """Seconds from `fusionkit up` to its banner, and the RSS of its processes by kind."""
    workdir.mkdir(parents=True)
    config = workdir / "panel.yaml"
    config.write_text(
        json.dumps({"endpoints": endpoints, "server": {"port": free_port(), "run_store": str(workdir / "runs.db")}})
    )
    log = workdir / "up.out"
    started = time.perf_counter()
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fusionkit_cli.main", "up", str(config), "--no-color"],
            cwd=workdir,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        while READY not in log.read_text():
            if proc.poll() is not None or time.perf_counter() - started > 60:
                raise RuntimeError(f"`fusionkit up` did not become ready:\n{log.read_text()[-3000:]}")
            time.sleep(0.005)
        seconds = time.perf_counter() - started
        memory: dict[str, list[float]] = {}
        root = psutil.Process(proc.pid)
        for member in [root, *root.children(recursive=True)]:
            memory.setdefault(_kind(member, proc.pid), []).append(rss_mb(member.pid))
        return seconds, memory
    finally:
        stop(proc, grace_s=30)


def up_cold_start(settings: Settings) -> Result:
    repeats = settings.pick(5, 2)
    rows: list[Row] = []
    details: dict[str, Any] = {}
    with upstream(*(f"m{i}=0" for i in range(3))) as stand_in:
        variants = [
            ("3 mock endpoints", 3, None),
            ("8 mock endpoints", 8, None),
            ("3 openai-compatible", 3, stand_in.url),
        ]
        for label, count, upstream_url in variants:
            seconds, memory = [], []
            for attempt in range(repeats):
                workdir = settings.workdir / f"up-{count}-{'mock' if upstream_url is None else 'oc'}-{attempt}"
                took, rss = _one_start(workdir, _endpoints(count, upstream_url))
                seconds.append(took)
                memory.append(rss)
            three = count == 3
            rows.append(
                Row.of(
                    f"`fusionkit up`, {label}: command to ready banner",
                    "s",
                    seconds,
                    target="<= 1.5 s" if three else None,
                    met=statistics.median(seconds) <= 1.5 if three else None,
                )
            )
            last = memory[-1]
            details[label] = {kind: sorted(values) for kind, values in last.items()}
            kinds = ("supervisor", "bridge", "router") if three else ()
            for kind in kinds:
                values = [v for snapshot in memory for v in snapshot.get(kind, [])]
                rows.append(Row.of(f"`fusionkit up`, {label}: resident memory per {kind}", "MB", values))
            totals = [sum(sum(values) for values in snapshot.values()) for snapshot in memory]
            rows.append(Row.of(f"`fusionkit up`, {label}: resident memory of the whole stack", "MB", totals))
    return Result(rows=rows, details=details)
