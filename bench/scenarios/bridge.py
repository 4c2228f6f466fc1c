"""The bridge alone: passthrough throughput and added latency, and what one bridge costs to start and keep.

Passthrough: the load generator calls the stand-in upstream directly (the floor), then the same
upstream through an openai-compatible bridge, alternating round by round so both see the same
machine. Start: spawn `fusionkit serve-endpoint` until `/health` answers, then its resident
memory after one answered request, for a mock and an openai-compatible bridge.
"""

from __future__ import annotations

import functools
import statistics
from contextlib import ExitStack

import httpx2

from bench.load import run_load
from bench.procs import rss_mb
from bench.scenarios.common import CHAT, Settings, bridge, cpu_per_request, median_by_key, upstream
from bench.stats import Result, Row, Unit, percentile

__all__ = ["bridge_passthrough", "bridge_start"]


def _openai_compatible(base: str) -> list[str]:
    return ["--id", "bench", "--provider", "openai-compatible", "--model", "bench", "--base-url", f"{base}/p/v1"]


def bridge_passthrough(settings: Settings) -> Result:
    rounds = settings.pick(5, 3)
    rows: list[Row] = []
    details: dict[str, object] = {"rounds": rounds}
    with ExitStack() as stack:
        stand_in = stack.enter_context(upstream("p=0"))
        base = stand_in.url
        front = stack.enter_context(bridge(*_openai_compatible(base)))
        levels = ((1, settings.pick(500, 200)), (8, settings.pick(1500, 500)), (32, settings.pick(1500, 500)))
        for concurrency, requests in levels:
            direct_rates, bridged_rates, added = [], [], []
            direct_ms: list[float] = []
            bridged_ms: list[float] = []
            cpu: list[dict[str, float]] = []
            for _ in range(rounds):
                direct = run_load(f"{base}/p/v1/chat/completions", CHAT, requests=requests, concurrency=concurrency)
                through = functools.partial(
                    run_load, f"{front.url}/v1/chat/completions", CHAT, requests=requests, concurrency=concurrency
                )
                bridged, spent = cpu_per_request({"bridge": front, "upstream": stand_in}, through)
                cpu.append(spent)
                direct_rates.append(direct.req_per_s)
                bridged_rates.append(bridged.req_per_s)
                added.append(statistics.median(bridged.latencies_ms) - statistics.median(direct.latencies_ms))
                direct_ms += direct.latencies_ms
                bridged_ms += bridged.latencies_ms
            rate_target = concurrency == 8
            rows.append(
                Row.of(
                    f"bridge passthrough, concurrency {concurrency}",
                    "req/s",
                    bridged_rates,
                    floor=statistics.median(direct_rates),
                    floor_note="the upstream called directly",
                    target=">= 300 req/s" if rate_target else None,
                    met=statistics.median(bridged_rates) >= 300 if rate_target else None,
                )
            )
            latency_target = concurrency == 1
            rows.append(
                Row.of(
                    f"bridge passthrough, concurrency {concurrency}: p50 latency added",
                    "ms",
                    added,
                    floor=0,
                    floor_note="added to the upstream's own",
                    target="< 3 ms" if latency_target else None,
                    met=statistics.median(added) < 3 if latency_target else None,
                )
            )
            details[f"concurrency_{concurrency}"] = {
                "requests_per_round": requests,
                "direct_latency_ms": {"p50": statistics.median(direct_ms), "p95": percentile(direct_ms, 95)},
                "bridge_latency_ms": {"p50": statistics.median(bridged_ms), "p95": percentile(bridged_ms, 95)},
                "cpu_ms_per_request": median_by_key(cpu),
            }
    return Result(rows=rows, details=details)


def bridge_start(settings: Settings) -> Result:
    repeats = settings.pick(5, 2)
    rows: list[Row] = []
    with upstream("p=0") as stand_in:
        base = stand_in.url
        kinds = {
            "mock": ["--id", "bench", "--provider", "mock", "--model", "mock-bench"],
            "openai-compatible": _openai_compatible(base),
        }
        for kind, flags in kinds.items():
            seconds, memory = [], []
            for _ in range(repeats):
                with bridge(*flags) as started:
                    answer = httpx2.post(f"{started.url}/v1/chat/completions", json=CHAT, timeout=10)
                    answer.raise_for_status()
                    seconds.append(started.start_s)
                    memory.append(rss_mb(started.pid))
            rows.append(_under(f"{kind} bridge: spawn to healthy", "s", seconds, 0.6))
            rows.append(_under(f"{kind} bridge: resident memory after one request", "MB", memory, 70))
    return Result(rows=rows)


def _under(name: str, unit: Unit, values: list[float], limit: float) -> Row:
    """A row whose target is a median under `limit`."""
    return Row.of(name, unit, values, target=f"< {limit:g} {unit}", met=statistics.median(values) < limit)
