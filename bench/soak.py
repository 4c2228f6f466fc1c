"""A bounded soak: `fusionkit up configs/demo.yaml`, concurrency 16 for a fixed time, then a report.

    python -m bench.soak --seconds 300

Counts errors, and samples the open file descriptors and resident memory of every process of
the stack every 10 s; growth is measured from the end of the warm-up to the end of the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
import psutil

from bench.procs import free_port

ROOT = Path(__file__).resolve().parent.parent


def _sample(root: int) -> dict[str, float]:
    procs = [psutil.Process(root), *psutil.Process(root).children(recursive=True)]
    return {
        "fds": float(sum(p.num_fds() for p in procs)),
        "rss_mb": round(sum(p.memory_info().rss for p in procs) / 2**20, 1),
    }


async def _drive(
    url: str, seconds: float, concurrency: int, samples: list[dict[str, float]], root: int, warmup_s: float
) -> dict[str, int]:
    counts = {"ok": 0, "errors": 0}
    deadline = time.monotonic() + seconds
    body = {"model": "fusionkit/panel", "messages": [{"role": "user", "content": "Compare two queue designs."}]}

    async def worker(client: httpx2.AsyncClient) -> None:
        while time.monotonic() < deadline:
            try:
                response = await client.post(url, json=body)
                counts["ok" if response.status_code == 200 else "errors"] += 1
            except httpx2.HTTPError:
                counts["errors"] += 1

    async def sampler() -> None:
        await asyncio.sleep(warmup_s)
        while time.monotonic() < deadline:
            samples.append(_sample(root))
            await asyncio.sleep(10)
        samples.append(_sample(root))

    async with httpx2.AsyncClient(timeout=60, limits=httpx2.Limits(max_connections=concurrency)) as client:
        await asyncio.gather(sampler(), *(worker(client) for _ in range(concurrency)))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--warmup", type=float, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    port = free_port()
    config = work / "demo.yaml"
    shutil.copy(ROOT / "configs" / "demo.yaml", config)
    log = work / "up.out"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fusionkit_cli.main", "up", str(config), "--port", str(port), "--no-color"],
            cwd=work,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        while "FusionKit is ready" not in log.read_text():
            if proc.poll() is not None:
                raise SystemExit(log.read_text())
            time.sleep(0.05)
        samples: list[dict[str, float]] = []
        counts = asyncio.run(
            _drive(
                f"http://127.0.0.1:{port}/v1/chat/completions",
                args.seconds,
                args.concurrency,
                samples,
                proc.pid,
                args.warmup,
            )
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    first, last = samples[0], samples[-1]
    report: dict[str, Any] = {
        "seconds": args.seconds,
        "concurrency": args.concurrency,
        **counts,
        "req_per_s": round((counts["ok"] + counts["errors"]) / args.seconds, 1),
        "fds_after_warmup": first["fds"],
        "fds_at_end": last["fds"],
        "rss_mb_after_warmup": first["rss_mb"],
        "rss_mb_at_end": last["rss_mb"],
        "rss_growth_pct": round(100 * (last["rss_mb"] - first["rss_mb"]) / first["rss_mb"], 1),
        "samples": samples,
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
