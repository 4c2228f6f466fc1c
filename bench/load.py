"""A bounded load generator: N requests at concurrency C against one URL, latencies in ms."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import httpx2

__all__ = ["Stats", "run_load", "summarize"]

Stats = dict[str, float]


def summarize(latencies_ms: list[float], wall_s: float | None = None) -> Stats:
    ordered = sorted(latencies_ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    out = {"n": float(len(ordered)), "p50_ms": round(statistics.median(ordered), 2), "p95_ms": round(p95, 2)}
    if wall_s:
        out["req_per_s"] = round(len(ordered) / wall_s, 1)
    return out


async def _load(url: str, body: dict[str, Any], requests: int, concurrency: int) -> Stats:
    latencies: list[float] = []
    limits = httpx2.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx2.AsyncClient(timeout=60, limits=limits) as client:
        for _ in range(min(concurrency, 4)):  # warm the connections
            (await client.post(url, json=body)).raise_for_status()
        queue = iter(range(requests))

        async def worker() -> None:
            for _ in queue:
                started = time.perf_counter()
                response = await client.post(url, json=body)
                response.raise_for_status()
                latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return summarize(latencies, wall)


def run_load(url: str, body: dict[str, Any], requests: int, concurrency: int) -> Stats:
    return asyncio.run(_load(url, body, requests, concurrency))
