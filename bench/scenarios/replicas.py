"""Router replicas on a shared PostgreSQL run store: fused req/s with 1, 2 and 3 replicas, against one on SQLite.

Every replica is a `fusionkit serve` process over the same three instant upstreams (one stand-in
process), with its own load generator at concurrency 8, as a load balancer would spread clients;
the rate of a round is every timed request of every replica over the longest load's wall time.
PostgreSQL is a real server started for the scenario (tests/pgserver.py) with `fsync=on` and
`synchronous_commit=off`: like the SQLite store's WAL with `synchronous=NORMAL`, a crash can lose
the last few milliseconds of commits but never corrupts the store. Each replica count gets a fresh
database. Also recorded: the CPU each kind of process spent per fused request.
"""

from __future__ import annotations

import statistics
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import psutil

from bench.load import LoadResult, run_load
from bench.scenarios.common import FUSED, FUSED_EXPECT, Server, Settings, router, upstream, write_config
from bench.stats import Result, Row
from tests.pgserver import PostgresMissing, PostgresServer

__all__ = ["replicas_throughput"]

CONCURRENCY = 8  # per replica


def _cpu_s(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            for each in [process, *process.children(recursive=True)]:
                times = each.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def _round(fronts: list[Server], requests: int, cpu_of: dict[str, list[int]]) -> tuple[float, dict[str, float]]:
    """One round: a load per replica at once; the combined rate and each kind of process's CPU ms per request."""
    before = {name: _cpu_s(pids) for name, pids in cpu_of.items()}
    with ThreadPoolExecutor(len(fronts)) as pool:
        loads: list[LoadResult] = list(
            pool.map(
                lambda front: run_load(
                    f"{front.url}/v1/chat/completions",
                    FUSED,
                    requests=requests,
                    concurrency=CONCURRENCY,
                    expect=FUSED_EXPECT,
                ),
                fronts,
            )
        )
    timed = sum(len(load.latencies_ms) for load in loads)
    served = sum(load.served for load in loads)
    spent = {name: round((_cpu_s(pids) - before[name]) * 1000 / served, 3) for name, pids in cpu_of.items()}
    return timed / max(load.wall_s for load in loads), spent


def _measure(
    config: Path, replicas: int, settings: Settings, stand_in: Server, database: list[int]
) -> tuple[list[float], dict[str, float]]:
    rates: list[float] = []
    cpu: list[dict[str, float]] = []
    with ExitStack() as stack:
        fronts = [stack.enter_context(router(config)) for _ in range(replicas)]
        cpu_of = {"routers": [f.pid for f in fronts], "upstream": [stand_in.pid]}
        if database:
            cpu_of["postgres"] = database
        for _ in range(settings.pick(3, 2)):
            rate, spent = _round(fronts, settings.pick(300, 100), cpu_of)
            rates.append(rate)
            cpu.append(spent)
    return rates, {key: round(statistics.median(c[key] for c in cpu), 3) for key in cpu[0]}


def replicas_throughput(settings: Settings) -> Result:
    details: dict[str, Any] = {"concurrency_per_replica": CONCURRENCY, "rounds": settings.pick(3, 2)}
    rows: list[Row] = []
    with upstream("p1=0", "p2=0", "p3=0") as stand_in:
        endpoints = {name: f"{stand_in.url}/{name}/v1" for name in ("p1", "p2", "p3")}
        sqlite = write_config(settings.workdir, endpoints, judge_model="p1", synthesizer_model="p3")
        base, details["sqlite_cpu_ms_per_request"] = _measure(sqlite, 1, settings, stand_in, [])
        rows.append(Row.of("1 router on SQLite: fused req/s", "req/s", base))
        try:
            server = PostgresServer.start(durable=True, settings={"synchronous_commit": "off"})
        except PostgresMissing as exc:
            details["postgresql"] = f"not measured: {exc}"
            return Result(rows=rows, details=details)
        with server:
            for replicas in (1, 2, 3):
                store = {"run_store": server.new_database()}
                config = write_config(
                    settings.workdir, endpoints, judge_model="p1", synthesizer_model="p3", server=store
                )
                rates, details[f"postgresql_{replicas}_cpu_ms_per_request"] = _measure(
                    config, replicas, settings, stand_in, [server.process.pid]
                )
                rows.append(
                    Row.of(
                        f"{replicas} router{'s' if replicas > 1 else ''} on PostgreSQL: fused req/s",
                        "req/s",
                        rates,
                        floor=statistics.median(base),
                        floor_note="1 router on SQLite",
                    )
                )
    return Result(rows=rows, details=details)

