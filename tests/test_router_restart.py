"""A router killed with SIGKILL mid-run, restarted on the same store: once the dead router's lease
lapses the new one marks its run `expired`, every completed run is intact; a router stopped with
SIGTERM gives its lease up and its unfinished run is expired at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from bench.procs import wait_healthy
from tests.livesrv import free_port

pytestmark = pytest.mark.slow

PANEL = {"messages": [{"role": "user", "content": "compare a and b"}], "mode": "panel"}


def _start(config: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "fusionkit_cli.main", "serve", "--config", str(config), "--port", str(port)],
        cwd=config.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_healthy(f"http://127.0.0.1:{port}", proc)
    return proc


def test_sigkilled_router_leaves_an_expired_run_and_intact_completed_runs(tmp_path: Path) -> None:
    config = tmp_path / "panel.yaml"
    config.write_text(
        json.dumps(
            {
                "endpoints": [
                    {"id": "quick", "provider": "mock", "model": "mock-concise"},
                    {"id": "slow", "provider": "mock", "model": "mock-cautious", "mock": {"latency_ms": 60_000}},
                ],
                "default_mode": "panel",
                "server": {"run_store": str(tmp_path / "runs.sqlite3"), "run_lease_s": 1},
            }
        )
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/fusion/runs"
    router = _start(config, port)
    try:
        done = httpx2.post(url, json={"messages": [{"role": "user", "content": "hi"}], "mode": "single"}).json()
        assert done["state"] == "completed"
        pending = httpx2.post(url, json=PANEL, headers={"Prefer": "respond-async"}).json()
        deadline = time.monotonic() + 10
        while httpx2.get(f"{url}/{pending['run_id']}").json()["state"] != "generating":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        router.kill()
        router.wait()
        router = _start(config, port)
        expired = _wait_ended(f"{url}/{pending['run_id']}")  # within the lease (1 s) and a renewal interval
        assert (expired["state"], expired["terminal_reason"]) == ("expired", "lease_expired")
        again = httpx2.get(f"{url}/{done['run_id']}/inspect").json()
        assert again["state"] == "completed" and again["final_output"] == done["inspection"]["final_output"]
        assert expired["terminal_error"]["error_code"] == "run_expired"
        events = httpx2.get(f"{url}/{pending['run_id']}/events").json()["events"]
        assert [e["event_seq"] for e in events] == list(range(1, len(events) + 1))
        assert (events[-1]["state"], events[-1]["payload"]["terminal_reason"]) == ("expired", "lease_expired")

        # A router that is stopped (not killed) says so at once: its unfinished run is expired as it goes.
        stopped = httpx2.post(url, json=PANEL, headers={"Prefer": "respond-async"}).json()
        router.terminate()
        router.wait(timeout=30)  # uvicorn shuts down gracefully, then re-raises the signal
        router = _start(config, port)
        run = httpx2.get(f"{url}/{stopped['run_id']}").json()
        assert (run["state"], run["terminal_reason"]) == ("expired", "router_stopped")
    finally:
        router.terminate()
        router.wait(timeout=10)


def _wait_ended(url: str) -> dict[str, object]:
    deadline = time.monotonic() + 30
    while (run := httpx2.get(url).json())["state"] not in ("completed", "failed", "cancelled", "expired"):
        assert time.monotonic() < deadline, run
        time.sleep(0.1)
    return run
