"""Two routers on one store (a SQLite file, a PostgreSQL database) share it under leases: starting the
second never expires the first one's runs, a run that has ended never changes again, and either router
reads every run."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from server.app import create_app
from server.clients import build_clients
from tests.held_calls import Hold
from tests.router_helpers import demo_endpoints, panel_config

ASK = {"messages": [{"role": "user", "content": "compare a and b"}], "mode": "panel"}


def wait_finished(url: str, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each run's summary once it has ended (they end when the held member is let go)."""
    finished: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 60
    while len(finished) < len(run_ids):
        assert time.monotonic() < deadline, f"runs still unfinished: {set(run_ids) - set(finished)}"
        for run_id in set(run_ids) - set(finished):
            run = httpx2.get(f"{url}/v1/fusion/runs/{run_id}").json()
            if run["state"] in ("completed", "failed", "cancelled", "expired"):
                finished[run_id] = run
        time.sleep(0.05)
    return finished


@pytest.fixture(params=["sqlite", "postgresql"])
def run_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "runs.sqlite3") if request.param == "sqlite" else str(request.getfixturevalue("pg_url"))


def test_a_second_router_on_the_same_store_leaves_the_first_ones_runs_alone(
    tmp_path: Path, live_server: Any, run_store: str
) -> None:
    config = panel_config(tmp_path, demo_endpoints(), judge_model="fast", server={"run_lease_s": 5})
    config.server.run_store = run_store
    clients = build_clients(config)
    hold = Hold()
    hold.endpoint(clients["careful"])
    first = live_server(create_app(config, clients=clients))
    async_runs = [
        httpx2.post(f"{first.url}/v1/fusion/runs", json=ASK, headers={"Prefer": "respond-async"}).json()["run_id"]
        for _ in range(3)
    ]
    hold.wait_for_calls(3)  # every run is generating, waiting on one member

    second = live_server(create_app(config))  # same config, same store file; its start-up has run
    for run_id in async_runs:
        seen = httpx2.get(f"{second.url}/v1/fusion/runs/{run_id}").json()  # any router reads any run
        assert seen["state"] == "generating", seen
    own = httpx2.post(f"{second.url}/v1/fusion/runs", json={**ASK, "mode": "single"}).json()
    assert own["state"] == "completed"

    hold.release()
    finished = wait_finished(second.url, async_runs)
    for run_id, run in finished.items():
        assert (run["state"], run["terminal_reason"]) == ("completed", "completed"), run
        events = httpx2.get(f"{first.url}/v1/fusion/runs/{run_id}/events", params={"limit": 1000}).json()["events"]
        assert [e["event_seq"] for e in events] == list(range(1, len(events) + 1))
        assert "run.expired" not in [e["payload"]["fusionkit"]["type"] for e in events]
        assert events[-1]["state"] == "completed"  # nothing after the end
