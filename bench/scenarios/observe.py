"""What metrics and tracing cost a fused request (issue 19): routers that differ only in them, measured in
alternating rounds of one run, so a busy neighbour on the machine slows every variant alike, each
round with a fresh router process (a warm-up, then the timed requests).

- off: `server.metrics: false`, no OpenTelemetry: what every router pays for the hooks alone;
- metrics: the default (`GET /metrics` counted, tracing off);
- metrics + tracing: OpenTelemetry on too, every span exported over OTLP/HTTP to a local collector
  (by the router's span exporter process, whose CPU is reported beside the router's).

Metrics and tracing are judged against off: what turning them on costs (target < 10 %). With
`FUSIONKIT_BENCH_BASELINE` naming a source tree of FusionKit before this work (say
`git archive $(git merge-base HEAD main) | tar -x -C /tmp/base`), a fourth router runs that tree's code
and off is judged against it: what the hooks cost when off (target < 2 %). The cost of a variant is how
much router CPU a fused request takes on top (CPU ratio - 1): with instant upstreams the router's one
core is what limits fused throughput. Throughput is reported beside it (1 - req/s ratio), and the span
exporter process's CPU beside the router's.
"""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from bench.load import run_load
from bench.scenarios.common import (
    FUSED,
    FUSED_EXPECT,
    Server,
    Settings,
    cpu_per_request,
    router,
    upstream,
    write_config,
)
from bench.stats import Result, Row

__all__ = ["observability_cost"]

OFF_TARGET = 0.02
ON_TARGET = 0.10
TRACED = "metrics + tracing"


def observability_cost(settings: Settings) -> Result:
    baseline = os.environ.get("FUSIONKIT_BENCH_BASELINE")
    rounds = settings.pick(6, 3)
    requests = settings.pick(1000, 200)  # per round: long enough for the collector's full passes to count
    rates: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    helper_cpu: list[float] = []
    with upstream("p1=0", "p2=0", "p3=0") as stand_in:
        endpoints = {name: f"{stand_in.url}/{name}/v1" for name in ("p1", "p2", "p3")}

        def config(**server: Any) -> Path:
            return write_config(settings.workdir, endpoints, judge_model="p1", synthesizer_model="p3", **server)

        variants: dict[str, tuple[Path, Path | None]] = {}  # name: its config, its source tree
        if baseline:
            variants["baseline"] = (config(), Path(baseline))
        variants["off"] = (config(server={"metrics": False}), None)
        variants["metrics"] = (config(), None)
        variants[TRACED] = (config(server={"otel": {"endpoint": stand_in.url}}), None)
        for _ in range(rounds):
            # Alternating, each round of each variant under the same weather; and a fresh router each round,
            # so that no variant's result rests on one process (its memory layout, its hash seed, its core).
            for name, (path, source) in variants.items():
                with router(path, source=source) as front:
                    _round(front, 200)  # warm-up, long enough for the span exporter process to have started
                    rate, router_ms, helper_ms = _round(front, requests)
                rates.setdefault(name, []).append(rate)
                cpu.setdefault(name, []).append(router_ms)
                if name == TRACED:
                    helper_cpu.append(helper_ms)
    rows, costs = [], {}
    for name in rates:
        # What turning observability on costs is judged against off; what off costs, against the baseline.
        reference = "baseline" if name == "off" and baseline else ("off" if name not in ("off", "baseline") else None)
        target = None if reference is None else (OFF_TARGET if name == "off" else ON_TARGET)
        base_rate = statistics.median(rates[reference]) if reference else None
        base_cpu = statistics.median(cpu[reference]) if reference else None
        rate, router_ms = statistics.median(rates[name]), statistics.median(cpu[name])
        met = None
        if base_rate is not None and base_cpu is not None:
            extra = router_ms / base_cpu - 1
            met = extra < target if target is not None else None
            costs[name] = {
                "against": reference,
                "throughput_loss": round(1 - rate / base_rate, 4),
                "extra_router_cpu": round(extra, 4),
            }
        rows.append(
            Row.of(
                f"router CPU per fused request, {name}",
                "ms",
                cpu[name],
                floor=base_cpu,
                floor_note=reference,
                target=f"< {target:.0%} more than {reference}" if target is not None else None,
                met=met,
            )
        )
        if name == TRACED and base_cpu is not None:
            total = [r + h for r, h in zip(cpu[name], helper_cpu, strict=True)]
            costs[name]["exporter_cpu_ms"] = round(statistics.median(helper_cpu), 3)
            costs[name]["extra_total_cpu"] = round(statistics.median(total) / base_cpu - 1, 4)
            rows.append(
                Row.of(
                    f"router + span exporter process CPU per fused request, {name}",
                    "ms",
                    total,
                    floor=base_cpu,
                    floor_note=reference,
                )
            )
        rows.append(Row.of(f"fused throughput, {name}", "req/s", rates[name], floor=base_rate, floor_note=reference))
    return Result(
        rows=rows,
        details={
            "rounds": rounds,
            "requests_per_round": requests,
            "concurrency": 8,
            "baseline_tree": baseline,
            "costs": costs,
        },
    )


def _round(front: Server, requests: int) -> tuple[float, float, float]:
    """One round of fused requests at concurrency 8: req/s, and the CPU ms per request of the router and of
    its child processes (its span exporter)."""
    url = f"{front.url}/v1/chat/completions"
    load, spent = cpu_per_request(
        {"router": front},
        lambda: run_load(url, FUSED, requests=requests, concurrency=8, expect=FUSED_EXPECT),
        children=True,
    )
    return load.req_per_s, spent["router"], spent["router children"]
