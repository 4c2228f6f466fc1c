"""The fusion router: one fused request's latency against its ideal, fused throughput, and a straggler.

Every upstream is a profile of one stand-in process; the router reaches it as an openai-compatible
endpoint, directly, or through one bridge per endpoint as under `fusionkit up`. Every timed
answer must have been judged and synthesized (`FUSED_EXPECT`).
"""

from __future__ import annotations

import statistics
from contextlib import ExitStack
from typing import Any

from bench.load import run_load
from bench.scenarios.common import (
    FUSED,
    FUSED_EXPECT,
    Server,
    Settings,
    bridge,
    cpu_per_request,
    median_by_key,
    router,
    upstream,
    write_config,
)
from bench.scenarios.phases import fetch_events, phase_gaps, recent_run_ids, run_span_ms
from bench.stats import Result, Row

__all__ = ["quorum", "router_latency", "router_throughput", "straggler"]

UPSTREAM_MS = 100
IDEAL_MS = 3 * UPSTREAM_MS  # panel (in parallel) + judge + synthesizer


def _panel_of_three(base: str) -> dict[str, str]:
    return {name: f"{base}/{name}/v1" for name in ("p1", "p2", "p3")}


def router_latency(settings: Settings) -> Result:
    requests = settings.pick(60, 20)
    profiles = [f"{name}={UPSTREAM_MS}" for name in ("p1", "p2", "p3")]
    with upstream(*profiles) as stand_in:
        config = write_config(settings.workdir, _panel_of_three(stand_in.url), judge_model="p1", synthesizer_model="p3")
        with router(config) as server:
            url = server.url
            load = run_load(f"{url}/v1/chat/completions", FUSED, requests=requests, concurrency=1, expect=FUSED_EXPECT)
            runs = [fetch_events(url, run_id) for run_id in recent_run_ids(url, requests)]
    latencies = load.latencies_ms
    overhead = [ms - IDEAL_MS for ms in latencies]
    gaps = [phase_gaps(events) for events in runs]
    breakdown = {name: round(statistics.median(g[name] for g in gaps), 1) for name in gaps[0]}
    outside = statistics.median(latencies) - statistics.median(run_span_ms(events) for events in runs)
    breakdown["HTTP in and out, outside the run"] = round(outside, 1)
    # The chart shows the run whose length is the median one: typical, not lucky.
    spans = sorted(runs, key=run_span_ms)
    typical = spans[len(spans) // 2]
    return Result(
        rows=[
            Row.of(
                "router, panel of 3 over 100 ms upstreams: end to end",
                "ms",
                latencies,
                floor=IDEAL_MS,
                floor_note="panel + judge + synthesizer",
            ),
            Row.of(
                "router, panel of 3: overhead over the ideal",
                "ms",
                overhead,
                floor=0,
                target="<= 15 ms (median)",
                met=statistics.median(overhead) <= 15,
            ),
        ],
        details={"requests": requests, "breakdown_ms": breakdown, "chart_events": typical},
    )


Rounds = tuple[list[float], list[float], list[dict[str, float]]]


def _rounds(front: Server, servers: dict[str, Server], settings: Settings) -> Rounds:
    """Fused rounds at concurrency 8: req/s per round, every latency, and each round's CPU ms per request."""
    rates, latencies, cpu = [], [], []
    for _ in range(settings.pick(5, 3)):
        load, spent = cpu_per_request(
            servers,
            lambda: run_load(
                f"{front.url}/v1/chat/completions",
                FUSED,
                requests=settings.pick(400, 150),
                concurrency=8,
                expect=FUSED_EXPECT,
            ),
        )
        rates.append(load.req_per_s)
        latencies += load.latencies_ms
        cpu.append(spent)
    return rates, latencies, cpu


def router_throughput(settings: Settings) -> Result:
    details: dict[str, Any] = {"rounds": settings.pick(5, 3), "requests_per_round": settings.pick(400, 150)}
    with upstream("p1=0", "p2=0", "p3=0") as stand_in:
        endpoints = _panel_of_three(stand_in.url)
        config = write_config(settings.workdir, endpoints, judge_model="p1", synthesizer_model="p3")
        with router(config) as front:
            direct, direct_ms, direct_cpu = _rounds(front, {"router": front, "upstream": stand_in}, settings)
        with ExitStack() as stack:
            bridges = {
                name: stack.enter_context(bridge("--config", str(config), "--endpoint", name)) for name in endpoints
            }
            front = stack.enter_context(router(config, {name: b.url for name, b in bridges.items()}))
            servers = {"router": front, "upstream": stand_in, **{f"bridge {n}": b for n, b in bridges.items()}}
            bridged, bridged_ms, bridged_cpu = _rounds(front, servers, settings)
    details["direct_cpu_ms_per_request"] = median_by_key(direct_cpu)
    details["through_bridges_cpu_ms_per_request"] = median_by_key(bridged_cpu)
    for name, values in (("direct", direct_ms), ("through_bridges", bridged_ms)):
        details[f"{name}_latency_ms"] = Row.of(name, "ms", values).model_dump(include={"median", "p95"})
    return Result(
        rows=[
            Row.of(
                "router throughput, instant upstreams, concurrency 8, direct",
                "req/s",
                direct,
                target=">= 150 req/s",
                met=statistics.median(direct) >= 150,
            ),
            Row.of(
                "router throughput, the same through one bridge per endpoint",
                "req/s",
                bridged,
                floor=statistics.median(direct),
                floor_note="direct",
            ),
            Row.of(
                "router CPU per fused request (direct; 1 core = 1000 ms/s)",
                "ms",
                [c["router"] for c in direct_cpu],
                floor=1000 / 150,
                floor_note="most it can spend for 150 req/s on one core",
            ),
        ],
        details=details,
    )


def straggler(settings: Settings) -> Result:
    requests = settings.pick(8, 3)
    with upstream(f"p1={UPSTREAM_MS}", f"p2={UPSTREAM_MS}", "slow=10000") as stand_in:
        endpoints = {name: f"{stand_in.url}/{name}/v1" for name in ("p1", "p2", "slow")}
        config = write_config(
            settings.workdir, endpoints, judge_model="p1", synthesizer_model="p2", panel={"member_timeout_s": 1}
        )
        with router(config) as server:
            latencies = _one_at_a_time(server.url, requests)
    return Result(
        rows=[
            Row.of(
                "straggler: one member takes 10 s, member_timeout_s 1",
                "ms",
                latencies,
                floor=1000 + 2 * UPSTREAM_MS,
                floor_note="member timeout + judge + synthesizer",
                target="<= 1300 ms, every request",
                met=max(latencies) <= 1300,
            )
        ],
        details={"requests": requests},
    )


def _one_at_a_time(url: str, requests: int) -> list[float]:
    """Latencies of `requests` fused requests sent one after another (after one to warm up)."""
    load = run_load(
        f"{url}/v1/chat/completions", FUSED, requests=requests, concurrency=1, warmup_per_worker=1, expect=FUSED_EXPECT
    )
    return load.latencies_ms


def quorum(settings: Settings) -> Result:
    """Cut the tail: a panel of 5 over 100 ms upstreams with one member at 2 s, without and with a quorum of 4."""
    requests = settings.pick(8, 3)
    grace_ms = 50
    names = ("p1", "p2", "p3", "p4")
    with upstream(*(f"{name}={UPSTREAM_MS}" for name in names), "slow=2000") as stand_in:
        endpoints = {name: f"{stand_in.url}/{name}/v1" for name in (*names, "slow")}
        latencies: dict[str, list[float]] = {}
        for label, panel in (("no quorum", {}), ("quorum 4", {"quorum": 4, "grace_ms": grace_ms})):
            config = write_config(settings.workdir, endpoints, judge_model="p1", synthesizer_model="p2", panel=panel)
            with router(config) as server:
                latencies[label] = _one_at_a_time(server.url, requests)
    floor = IDEAL_MS + grace_ms
    return Result(
        rows=[
            Row.of(
                "panel of 5, one member at 2 s: no quorum",
                "ms",
                latencies["no quorum"],
                floor=2000 + 2 * UPSTREAM_MS,
                floor_note="the slow member + judge + synthesizer",
            ),
            Row.of(
                f"panel of 5, one member at 2 s: quorum 4, grace {grace_ms} ms",
                "ms",
                latencies["quorum 4"],
                floor=floor,
                floor_note="panel + grace + judge + synthesizer",
                target=f"<= {floor + 100} ms (median)",
                met=statistics.median(latencies["quorum 4"]) <= floor + 100,
            ),
        ],
        details={"requests": requests, "grace_ms": grace_ms},
    )
