"""A router killed with SIGKILL mid-run, restarted on the same store: the run reads `expired`,
every completed run is intact."""

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
                "server": {"run_store": str(tmp_path / "runs.sqlite3")},
            }
        )
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1/fusion/runs"
    router = _start(config, port)
    try:
        done = httpx2.post(url, json={"messages": [{"role": "user", "content": "hi"}], "mode": "single"}).json()
        assert done["state"] == "completed"
        pending = httpx2.post(
            url,
            json={"messages": [{"role": "user", "content": "compare a and b"}], "mode": "panel"},
            headers={"Prefer": "respond-async"},
        ).json()
        deadline = time.monotonic() + 10
        while httpx2.get(f"{url}/{pending['run_id']}").json()["state"] != "generating":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        router.kill()
        router.wait()
        router = _start(config, port)
        expired = httpx2.get(f"{url}/{pending['run_id']}").json()
        assert (expired["state"], expired["terminal_reason"]) == ("expired", "router_restarted")
        again = httpx2.get(f"{url}/{done['run_id']}/inspect").json()
        assert again["state"] == "completed" and again["final_output"] == done["inspection"]["final_output"]
        assert expired["terminal_error"]["error_code"] == "run_expired"
        events = httpx2.get(f"{url}/{pending['run_id']}/events").json()["events"]
        assert [e["event_seq"] for e in events] == list(range(1, len(events) + 1))
        assert (events[-1]["state"], events[-1]["payload"]["terminal_reason"]) == ("expired", "router_restarted")
    finally:
        router.terminate()
        router.wait(timeout=10)
