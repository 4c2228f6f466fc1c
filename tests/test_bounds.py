"""Bounded by default: a run has a wall clock without any config, the router prunes finished runs
past `server.retention` by itself, and connections that never finish their request head are closed
(`server.header_timeout_s`) instead of holding a descriptor each."""

from __future__ import annotations

import http.client
import json
import socket
import time
from pathlib import Path
from typing import Any

import httpx2
import psutil
import pytest

from bench.procs import spawn, wait_healthy
from fusionkit_cli.config_loader import load_config
from server.app import create_app
from server.config import DEFAULT_WALL_CLOCK_S
from tests.livesrv import free_port
from tests.router_helpers import demo_endpoints, panel_config

ASK = {"messages": [{"role": "user", "content": "hi"}], "mode": "single"}


def test_a_run_has_a_wall_clock_unless_the_config_removes_it(tmp_path: Path) -> None:
    path = tmp_path / "panel.yaml"
    path.write_text("endpoints:\n  - {id: a, provider: mock, model: m}\n")
    assert DEFAULT_WALL_CLOCK_S == 300
    assert load_config(path).budget.wall_clock_s == DEFAULT_WALL_CLOCK_S
    path.write_text("endpoints:\n  - {id: a, provider: mock, model: m}\nbudget: {wall_clock_s: null}\n")
    assert load_config(path).budget.wall_clock_s is None  # unbounded only when asked for


def test_the_router_prunes_finished_runs_past_the_retention_by_itself(tmp_path: Path, live_server: Any) -> None:
    retention = {"max_runs": 2, "max_age_days": None, "prune_every_s": 0.1}
    config = panel_config(tmp_path, demo_endpoints(), server={"retention": retention, "run_lease_s": 1})
    url = live_server(create_app(config)).url + "/v1/fusion/runs"
    made = [httpx2.post(url, json=ASK).json()["run_id"] for _ in range(5)]

    deadline = time.monotonic() + 30
    while len(left := httpx2.get(url, params={"limit": 100}).json()["data"]) > 2:
        assert time.monotonic() < deadline, f"{len(left)} runs left"
        time.sleep(0.1)
    assert [r["run_id"] for r in left] == made[:2:-1]  # the newest two


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends before it closes the connection (the test's own timeout fails it)."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


@pytest.mark.slow
def test_connections_that_never_finish_their_request_head_are_closed(tmp_path: Path) -> None:
    config = tmp_path / "panel.yaml"
    config.write_text(
        json.dumps(
            {
                "endpoints": [{"id": "a", "provider": "mock", "model": "m"}],
                "server": {"run_store": str(tmp_path / "runs.sqlite3"), "header_timeout_s": 1},
            }
        )
    )
    port = free_port()
    with spawn(["-m", "fusionkit_cli.main", "serve", "--config", str(config), "--port", str(port)]) as proc:
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        server = psutil.Process(proc.pid)
        idle_fds = server.num_fds()
        slow = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(100)]
        try:
            for sock in slow[:60]:  # a request line and one header, never the blank line that ends the head
                sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
            # Served meanwhile: a whole head sent in two pieces, well within the deadline.
            with socket.create_connection(("127.0.0.1", port), timeout=20) as ok:
                ok.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                ok.sendall(b"Connection: close\r\n\r\n")
                assert read_until_closed(ok).startswith(b"HTTP/1.1 200")

            for sock in slow[:60]:
                assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")
            for sock in slow[60:]:  # connected, sent nothing
                assert read_until_closed(sock) == b""
        finally:
            for sock in slow:
                sock.close()
        assert server.num_fds() <= idle_fds + 5

        # A kept-alive connection gets the same deadline for its next request.
        kept = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        try:
            kept.request("GET", "/health")
            first = kept.getresponse()
            assert first.status == 200 and first.read()
            assert kept.sock is not None
            kept.sock.sendall(b"GET /health HTTP/1.1\r\n")
            assert read_until_closed(kept.sock).startswith(b"HTTP/1.1 408 ")
        finally:
            kept.close()
