"""A client that goes away cancels its run's model calls, and that is logged as one INFO access line.

The panel members are slow mocks (5 s), so the run is surely still working when the raw socket
closes; the run store then shows the run `cancelled` because the client disconnected, with no
model call completed, long before the members could have answered.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from server.app import create_app
from server.store import RunRecord, RunStore
from tests.router_helpers import demo_endpoints, panel_config

SLOW = {"latency_ms": 5000}


async def _runs(path: Path) -> list[tuple[RunRecord, list[str]]]:
    async with RunStore(path) as store:
        return [(run, [e.type for e in await store.events(run.run_id)]) for run in await store.list_runs()]


def _wait_for(path: Path, condition: Any, what: str) -> list[tuple[RunRecord, list[str]]]:
    deadline = time.monotonic() + 4  # well inside the members' 5 s: the run must not have finished on its own
    while True:
        runs = asyncio.run(_runs(path)) if path.exists() else []
        if runs and condition(runs[0]):
            return runs
        assert time.monotonic() < deadline, f"never: {what}; runs: {[(r.state, e) for r, e in runs]}"
        time.sleep(0.05)


@pytest.mark.parametrize("stream", [False, True])
def test_a_client_that_goes_away_cancels_its_run(
    tmp_path: Path, live_server: Any, caplog: pytest.LogCaptureFixture, stream: bool
) -> None:
    caplog.set_level(logging.INFO)
    config = panel_config(tmp_path, demo_endpoints(fast=SLOW, careful=SLOW, structured=SLOW))
    server = live_server(create_app(config))
    store = tmp_path / "runs.sqlite3"
    body = json.dumps({"model": "fusionkit/panel", "messages": [{"role": "user", "content": "hi"}], "stream": stream})
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        head = (
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        sock.sendall(head.encode() + body.encode())
        _wait_for(store, lambda run: run[1].count("model_call.started") == 3, "three members called")
    runs = _wait_for(store, lambda run: run[0].finished, "the run ended")
    run, events = runs[0]
    assert (run.state, run.terminal_reason) == ("cancelled", "client_disconnected")
    assert "model_call.completed" not in events
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]
    access = [r.getMessage() for r in caplog.records if r.name == "fusionkit.access"]
    # A stream had begun (200); a plain request never got its answer (499, the nginx convention).
    assert len(access) == 1 and (" 200 " if stream else " 499 ") in access[0]
