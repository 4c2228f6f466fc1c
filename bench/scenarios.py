"""The benchmark scenarios. Each returns a dict of numbers plus the floor it is compared against."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
import psutil

from bench.load import run_load, summarize
from bench.procs import free_port, rss_mb, spawn, wait_healthy

CHAT = {"model": "bench", "messages": [{"role": "user", "content": "Compare two caching strategies."}]}
FUSED = {**CHAT, "model": "fusionkit/panel"}


def _upstream(port: int, latency_ms: float = 0, tokens: int = 20, tokens_per_s: float = 0) -> list[str]:
    return [
        "-m",
        "bench.upstream",
        "--port",
        str(port),
        "--latency-ms",
        str(latency_ms),
        "--tokens",
        str(tokens),
        "--tokens-per-s",
        str(tokens_per_s),
    ]


def _config(directory: Path, upstreams: dict[str, str], **extra: Any) -> Path:
    config = {
        "endpoints": [
            {"id": name, "provider": "openai-compatible", "model": "bench", "base_url": url + "/v1"}
            for name, url in upstreams.items()
        ],
        "default_mode": "panel",
        "judge_model": next(iter(upstreams)),
        "synthesizer_model": list(upstreams)[-1],
        "server": {"run_store": str(directory / "runs.sqlite3")},
        **extra,
    }
    path = directory / f"bench-{len(list(directory.iterdir()))}.yaml"
    path.write_text(json.dumps(config))
    return path


def bridge_passthrough(quick: bool) -> dict[str, Any]:
    requests = 300 if quick else 1500
    up_port, bridge_port = free_port(), free_port()
    out: dict[str, Any] = {"floor": "the upstream called directly"}
    with spawn(_upstream(up_port)) as upstream:
        wait_healthy(f"http://127.0.0.1:{up_port}", upstream)
        args = [
            "-m",
            "fusionkit_cli.main",
            "serve-endpoint",
            "--id",
            "bench",
            "--provider",
            "openai-compatible",
            "--model",
            "bench",
            "--base-url",
            f"http://127.0.0.1:{up_port}/v1",
            "--port",
            str(bridge_port),
        ]
        started = time.perf_counter()
        with spawn(args) as bridge:
            out["spawn_to_healthy_s"] = round(
                wait_healthy(f"http://127.0.0.1:{bridge_port}", bridge) + (time.perf_counter() - started) * 0, 3
            )
            for concurrency in (1, 8, 32):
                direct = run_load(f"http://127.0.0.1:{up_port}/v1/chat/completions", CHAT, requests, concurrency)
                bridged = run_load(f"http://127.0.0.1:{bridge_port}/v1/chat/completions", CHAT, requests, concurrency)
                out[f"c{concurrency}"] = {
                    "direct": direct,
                    "bridge": bridged,
                    "added_p50_ms": round(bridged["p50_ms"] - direct["p50_ms"], 2),
                }
            out["bridge_rss_mb"] = round(rss_mb(bridge.pid), 1)
    return out


def _router(config: Path, port: int, bridges: Path | None = None) -> list[str]:
    args = ["-m", "fusionkit_cli.main", "serve", "--config", str(config), "--port", str(port)]
    return args + (["--bridges", str(bridges)] if bridges else [])


def router_panel_latency(quick: bool, directory: Path) -> dict[str, Any]:
    ports = [free_port() for _ in range(3)]
    router_port = free_port()
    with (
        spawn(_upstream(ports[0], 100)) as a,
        spawn(_upstream(ports[1], 100)) as b,
        spawn(_upstream(ports[2], 100)) as c,
    ):
        for port, proc in zip(ports, (a, b, c), strict=True):
            wait_healthy(f"http://127.0.0.1:{port}", proc)
        config = _config(directory, {f"m{i}": f"http://127.0.0.1:{p}" for i, p in enumerate(ports)})
        with spawn(_router(config, router_port)) as router:
            wait_healthy(f"http://127.0.0.1:{router_port}", router)
            stats = run_load(f"http://127.0.0.1:{router_port}/v1/chat/completions", FUSED, 20 if quick else 60, 1)
            run_id = httpx2.post(f"http://127.0.0.1:{router_port}/v1/chat/completions", json=FUSED, timeout=30).json()[
                "fusionkit"
            ]["run_id"]
            events = httpx2.get(
                f"http://127.0.0.1:{router_port}/v1/fusion/runs/{run_id}/events", params={"limit": 1000}
            ).json()["data"]
    return {
        "floor": "ideal 300 ms (panel 100 + judge 100 + synthesizer 100)",
        **stats,
        "overhead_p50_ms": round(stats["p50_ms"] - 300, 2),
        "events": events,
    }


def router_throughput(quick: bool, directory: Path) -> dict[str, Any]:
    requests = 200 if quick else 800
    ports = [free_port() for _ in range(3)]
    out: dict[str, Any] = {"floor": "target >= 150 fused req/s at concurrency 8"}
    with spawn(_upstream(ports[0])) as a, spawn(_upstream(ports[1])) as b, spawn(_upstream(ports[2])) as c:
        for port, proc in zip(ports, (a, b, c), strict=True):
            wait_healthy(f"http://127.0.0.1:{port}", proc)
        urls = {f"m{i}": f"http://127.0.0.1:{p}" for i, p in enumerate(ports)}
        router_port = free_port()
        with spawn(_router(_config(directory, urls), router_port)) as router:
            wait_healthy(f"http://127.0.0.1:{router_port}", router)
            out["direct"] = run_load(f"http://127.0.0.1:{router_port}/v1/chat/completions", FUSED, requests, 8)
        # Through one bridge per endpoint, as under `fusionkit up`.
        bridge_ports = {name: free_port() for name in urls}
        config = _config(directory, urls)
        procs = []
        try:
            for name, port in bridge_ports.items():
                ctx = spawn(
                    [
                        "-m",
                        "fusionkit_cli.main",
                        "serve-endpoint",
                        "--config",
                        str(config),
                        "--endpoint",
                        name,
                        "--port",
                        str(port),
                    ]
                )
                procs.append((ctx, ctx.__enter__(), port))
            for _, proc, port in procs:
                wait_healthy(f"http://127.0.0.1:{port}", proc)
            bridges = directory / "bridges.json"
            bridges.write_text(json.dumps({n: f"http://127.0.0.1:{p}" for n, p in bridge_ports.items()}))
            router_port = free_port()
            with spawn(_router(config, router_port, bridges)) as router:
                wait_healthy(f"http://127.0.0.1:{router_port}", router)
                out["through_bridges"] = run_load(
                    f"http://127.0.0.1:{router_port}/v1/chat/completions", FUSED, requests, 8
                )
        finally:
            for ctx, _, _ in procs:
                ctx.__exit__(None, None, None)
    return out


async def _first_token(url: str) -> tuple[float, float]:
    body = {**FUSED, "stream": True}
    async with httpx2.AsyncClient(timeout=60) as client:
        started = time.perf_counter()
        first = None
        async with client.stream("POST", url, json=body) as response:
            async for line in response.aiter_lines():
                if (
                    first is None
                    and line.startswith("data: {")
                    and '"content":"' in line.replace(" ", "")
                    and '"content":""' not in line.replace(" ", "")
                ):
                    first = time.perf_counter() - started
        return (first or 0) * 1000, (time.perf_counter() - started) * 1000


def streaming_first_token(quick: bool, directory: Path) -> dict[str, Any]:
    ports = [free_port() for _ in range(3)]
    router_port = free_port()
    # Members and judge take 100 ms; the synthesizer ("m2") streams 200 tokens at 50 tokens/s.
    with (
        spawn(_upstream(ports[0], 100)) as a,
        spawn(_upstream(ports[1], 100)) as b,
        spawn(_upstream(ports[2], 100, tokens=200, tokens_per_s=50)) as c,
    ):
        for port, proc in zip(ports, (a, b, c), strict=True):
            wait_healthy(f"http://127.0.0.1:{port}", proc)
        config = _config(
            directory, {f"m{i}": f"http://127.0.0.1:{p}" for i, p in enumerate(ports)}, panel_models=["m0", "m1"]
        )
        with spawn(_router(config, router_port)) as router:
            wait_healthy(f"http://127.0.0.1:{router_port}", router)
            url = f"http://127.0.0.1:{router_port}/v1/chat/completions"
            runs = [asyncio.run(_first_token(url)) for _ in range(3 if quick else 8)]
    first = summarize([r[0] for r in runs])
    total = summarize([r[1] for r in runs])
    return {
        "floor": "ideal first token 300 ms (panel 100 + judge 100 + synthesizer's first token after 100)",
        "first_token": first,
        "full_answer": total,
    }


def straggler(quick: bool, directory: Path) -> dict[str, Any]:
    ports = [free_port() for _ in range(3)]
    router_port = free_port()
    with (
        spawn(_upstream(ports[0], 100)) as a,
        spawn(_upstream(ports[1], 100)) as b,
        spawn(_upstream(ports[2], 10_000)) as c,
    ):
        for port, proc in zip(ports, (a, b, c), strict=True):
            wait_healthy(f"http://127.0.0.1:{port}", proc)
        urls = {
            "m0": f"http://127.0.0.1:{ports[0]}",
            "m1": f"http://127.0.0.1:{ports[1]}",
            "slow": f"http://127.0.0.1:{ports[2]}",
        }
        config = _config(directory, urls, judge_model="m0", synthesizer_model="m1", panel={"member_timeout_s": 1})
        with spawn(_router(config, router_port)) as router:
            wait_healthy(f"http://127.0.0.1:{router_port}", router)
            stats = run_load(f"http://127.0.0.1:{router_port}/v1/chat/completions", FUSED, 3 if quick else 6, 1)
    return {"floor": "target within 1.3 s (1 s member timeout + judge 100 + synthesizer 100)", **stats}


def up_cold_start(quick: bool, directory: Path) -> dict[str, Any]:
    out: dict[str, Any] = {"floor": "target: 3 endpoints ready in <= 2.5 s"}
    for count in (3, 8):
        times, memory = [], []
        for _ in range(2 if quick else 3):
            work = Path(tempfile.mkdtemp(dir=directory))
            port = free_port()
            config = work / "panel.yaml"
            config.write_text(
                json.dumps(
                    {
                        "endpoints": [{"id": f"m{i}", "provider": "mock", "model": f"mock-{i}"} for i in range(count)],
                        "server": {"port": port, "run_store": str(work / "runs.sqlite3")},
                    }
                )
            )
            log = work / "up.out"
            started = time.perf_counter()
            # Output to a file, not a pipe: nobody reads a pipe after the banner, and a full pipe blocks.
            with log.open("w") as sink:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "fusionkit_cli.main", "up", str(config), "--no-color"],
                    cwd=work,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            try:
                while "FusionKit is ready" not in log.read_text():
                    if proc.poll() is not None or time.perf_counter() - started > 60:
                        raise RuntimeError(f"up did not become ready:\n{log.read_text()}")
                    time.sleep(0.01)
                times.append((time.perf_counter() - started) * 1000)
                tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
                memory.append({p.pid: round(rss_mb(p.pid), 1) for p in tree})
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        per_process = sorted(v for snapshot in memory[-1:] for v in snapshot.values())
        out[f"endpoints_{count}"] = {
            **summarize(times),
            "rss_mb_per_process": per_process,
            "rss_mb_total": round(sum(per_process), 1),
        }
    return out
