"""What the scenarios share: the request bodies, configs, and the processes of a stack.

    with ExitStack() as stack:
        base = stack.enter_context(upstream("p1=100", "p2=100")).url   # one stand-in process
        config = write_config(workdir, {"p1": f"{base}/p1/v1", "p2": f"{base}/p2/v1"})
        url = stack.enter_context(router(config)).url

Every process is a real `fusionkit` command (or the stand-in) started with this interpreter and
stopped when its context ends.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.load import LoadResult
from bench.procs import free_port, spawn, wait_healthy

__all__ = [
    "CHAT",
    "FUSED",
    "FUSED_EXPECT",
    "Server",
    "Settings",
    "bridge",
    "cpu_per_request",
    "median_by_key",
    "router",
    "upstream",
    "write_config",
]

LOCAL = "http://127.0.0.1"
CHAT: dict[str, Any] = {
    "model": "bench",
    "messages": [{"role": "user", "content": "Compare write-through and write-back caching in three sentences."}],
}
FUSED: dict[str, Any] = {**CHAT, "model": "fusionkit/panel"}
# Every timed fused answer must have gone through judge and synthesizer (not a shortcut or a fallback).
FUSED_EXPECT = '"reason":"judged_and_synthesized"'

_config_names = itertools.count(1)


@dataclass(frozen=True)
class Settings:
    """How much each scenario measures: `python -m bench` (full) or `--quick`."""

    quick: bool
    workdir: Path

    def pick(self, full: int, quick: int) -> int:
        return quick if self.quick else full


@dataclass(frozen=True)
class Server:
    """A started server process: where it listens, its pid, and seconds from spawn to healthy."""

    url: str
    pid: int
    start_s: float

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the process has used so far."""
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)

    def children_cpu_s(self) -> float:
        """CPU seconds its live child processes (a router's span exporter) have used so far."""
        total = 0.0
        for child in psutil.Process(self.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                times = child.cpu_times()
                total += times.user + times.system
        return total


@contextlib.contextmanager
def _serve(args: list[str], cwd: Path | None = None) -> Iterator[Server]:
    port = free_port()
    started = time.perf_counter()
    with spawn([*args, "--port", str(port)], cwd=cwd) as proc:
        url = f"{LOCAL}:{port}"
        wait_healthy(url, proc)
        yield Server(url, proc.pid, time.perf_counter() - started)


@contextlib.contextmanager
def upstream(*profiles: str) -> Iterator[Server]:
    """The stand-in upstream serving `profiles` (NAME=LATENCY_MS[,TOKENS[,TOKENS_PER_S]])."""
    args = ["-m", "bench.upstream"]
    for profile in profiles:
        args += ["--profile", profile]
    with _serve(args) as server:
        yield server


def write_config(workdir: Path, endpoints: dict[str, str], **extra: Any) -> Path:
    """A panel config of openai-compatible endpoints at `endpoints` (id -> base URL with /v1)."""
    config = {
        "endpoints": [
            {"id": name, "provider": "openai-compatible", "model": "bench", "base_url": url}
            for name, url in endpoints.items()
        ],
        "default_mode": "panel",
        **extra,
        # `server` settings join the config's own store, never replace it (each router its own file)
        "server": {"run_store": str(workdir / f"runs-{next(_config_names)}.sqlite3"), **extra.get("server", {})},
    }
    path = workdir / f"bench-{next(_config_names)}.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@contextlib.contextmanager
def router(config: Path, bridges: dict[str, str] | None = None, *, source: Path | None = None) -> Iterator[Server]:
    """`fusionkit serve --config CONFIG [--bridges ...]`; `source`: run the fusionkit of that source tree instead
    (`python -m` finds its packages first), to compare against another version."""
    args = ["-m", "fusionkit_cli.main", "serve", "--config", str(config)]
    if bridges:
        path = config.with_suffix(".bridges.json")
        path.write_text(json.dumps(bridges))
        args += ["--bridges", str(path)]
    with _serve(args, cwd=source) as server:
        yield server


@contextlib.contextmanager
def bridge(*flags: str, source: Path | None = None) -> Iterator[Server]:
    """`fusionkit serve-endpoint FLAGS`; `source` as for `router`."""
    with _serve(["-m", "fusionkit_cli.main", "serve-endpoint", *flags], cwd=source) as server:
        yield server


def cpu_per_request(
    servers: dict[str, Server], run: Callable[[], LoadResult], *, children: bool = False
) -> tuple[LoadResult, dict[str, float]]:
    """Run a load and say how many ms of CPU each process spent per request, the load generator's included;
    with `children`, also each server's child processes' ("NAME children": a router's span exporter)."""
    cpu: dict[str, Callable[[], float]] = {name: server.cpu_s for name, server in servers.items()}
    if children:
        cpu.update({f"{name} children": server.children_cpu_s for name, server in servers.items()})
    before = {name: measure() for name, measure in cpu.items()}
    load = run()
    spent = {name: (measure() - before[name]) * 1000 / load.served for name, measure in cpu.items()}
    spent["load generator"] = load.cpu_s * 1000 / load.requests
    return load, spent


def median_by_key(samples: list[dict[str, float]]) -> dict[str, float]:
    return {key: round(statistics.median(s[key] for s in samples), 3) for key in samples[0]}
