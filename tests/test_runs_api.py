"""The native runs API against a real router: idempotency, async runs, events, cancel, inspect."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from server.app import create_app
from tests.router_helpers import demo_endpoints, panel_config

MESSAGES = [{"role": "user", "content": "Compare two ways to cache HTTP responses."}]


def wait_for_state(url: str, run_id: str, states: set[str], timeout_s: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        run = httpx2.get(f"{url}/v1/fusion/runs/{run_id}").json()
        if run["state"] in states:
            return run
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} stayed {run['state']}, never reached {states}")
        time.sleep(0.05)


def test_create_waits_for_the_run_and_replays_by_idempotency_key(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    body = {"messages": MESSAGES, "mode": "panel", "contract_version": "fusion-run-request.v1"}
    first = httpx2.post(f"{server.url}/v1/fusion/runs", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201 and first.json()["outcome"] == "created"
    run = first.json()["run"]
    assert run["state"] == "completed" and run["terminal_reason"] == "completed" and run["final_output"]["content"]

    again = httpx2.post(f"{server.url}/v1/fusion/runs", json=body, headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 200 and again.json()["outcome"] == "replayed"
    assert again.json()["run"]["run_id"] == run["run_id"]
    # The replay made no model call: still one run, and its event log did not grow.
    listed = httpx2.get(f"{server.url}/v1/fusion/runs").json()["data"]
    assert [r["run_id"] for r in listed] == [run["run_id"]]
    events = httpx2.get(f"{server.url}/v1/fusion/runs/{run['run_id']}/events", params={"limit": 1000}).json()
    calls = [e for e in events["data"] if e["type"] == "model_call.started"]
    assert len(calls) == 5

    conflict = httpx2.post(
        f"{server.url}/v1/fusion/runs", json={**body, "verify": True}, headers={"Idempotency-Key": "k-1"}
    )
    assert conflict.status_code == 409 and conflict.json()["error"]["code"] == "idempotency_conflict"


def test_async_create_then_poll_events_to_completion(tmp_path: Path, live_server: Any) -> None:
    endpoints = demo_endpoints(fast={"latency_ms": 300})
    server = live_server(create_app(panel_config(tmp_path, endpoints)))
    created = httpx2.post(
        f"{server.url}/v1/fusion/runs",
        json={"messages": MESSAGES, "mode": "panel"},
        headers={"Prefer": "respond-async"},
    )
    assert created.status_code == 202
    run_id = created.json()["run"]["run_id"]
    assert created.headers["location"] == f"/v1/fusion/runs/{run_id}"

    seen: list[dict[str, Any]] = []
    cursor = 0
    deadline = time.monotonic() + 15
    while not seen or seen[-1]["payload"].get("state") not in ("completed", "failed"):
        assert time.monotonic() < deadline, "run did not finish"
        page = httpx2.get(f"{server.url}/v1/fusion/runs/{run_id}/events", params={"after": cursor, "limit": 3}).json()
        seen += page["data"]
        cursor = page["next_event_cursor"]
        if not page["data"]:
            time.sleep(0.05)
    assert [e["seq"] for e in seen] == list(range(1, len(seen) + 1))
    assert seen[0]["type"] == "run.created"
    assert seen[-1]["payload"]["state"] == "completed"


def test_cancel_mid_panel_ends_the_run_cancelled(tmp_path: Path, live_server: Any) -> None:
    endpoints = demo_endpoints(structured={"latency_ms": 30_000})
    server = live_server(create_app(panel_config(tmp_path, endpoints)))
    created = httpx2.post(
        f"{server.url}/v1/fusion/runs",
        json={"messages": MESSAGES, "mode": "panel"},
        headers={"Prefer": "respond-async"},
    )
    run_id = created.json()["run"]["run_id"]
    wait_for_state(server.url, run_id, {"generating"})
    cancelled = httpx2.post(f"{server.url}/v1/fusion/runs/{run_id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "cancelled" and cancelled.json()["terminal_reason"] == "cancel_requested"
    # A finished run can be asked to cancel again: it just reports its state.
    assert httpx2.post(f"{server.url}/v1/fusion/runs/{run_id}/cancel").json()["state"] == "cancelled"


def test_inspect_tells_what_each_model_said_and_why(tmp_path: Path, live_server: Any) -> None:
    config = panel_config(tmp_path, demo_endpoints(fast={"fail_rate": 1.0}), judge_model="careful")
    server = live_server(create_app(config))
    run = httpx2.post(f"{server.url}/v1/fusion/runs", json={"messages": MESSAGES, "mode": "panel"}).json()["run"]
    data = httpx2.get(f"{server.url}/v1/fusion/runs/{run['run_id']}/inspect").json()
    by_id = {c["candidate_id"]: c for c in data["candidates"]}
    assert by_id["c1"]["status"] == "dropped" and "failed on purpose" in by_id["c1"]["reason"]
    assert by_id["c2"]["text"].startswith("[offline mock model mock-cautious]")
    assert {by_id["c2"]["rank"], by_id["c3"]["rank"]} == {1, 2}
    assert data["judge_synthesis_record"]["analysis"]["ranking"]
    assert data["decision"]["type"] == "synthesize"
    assert data["final_output"]["content"] == run["final_output"]["content"]
    assert data["pending_action"] is None


@pytest.mark.parametrize("run_id", ["../../etc/passwd", "run_x", "..%2F..%2Fetc", "run_" + "0" * 24, "%00"])
def test_unknown_and_malformed_run_ids_are_404(tmp_path: Path, live_server: Any, run_id: str) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    for suffix in ("", "/inspect", "/events"):
        response = httpx2.get(f"{server.url}/v1/fusion/runs/{run_id}{suffix}")
        assert response.status_code == 404, (run_id, suffix)
        if response.headers["content-type"].startswith("application/json"):
            assert response.json()["error"]["code"] in ("run_not_found", "404")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("runs.sqlite3")) == []


def test_bad_run_requests_are_400(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    url = f"{server.url}/v1/fusion/runs"
    assert httpx2.post(url, json={"messages": []}).status_code == 400
    assert httpx2.post(url, json={"messages": MESSAGES, "mode": "mob"}).json()["error"]["param"] == "mode"
    assert httpx2.post(url, json={"messages": MESSAGES, "requested_models": ["ghost"]}).status_code == 400
    bad_key = httpx2.post(url, json={"messages": MESSAGES}, headers={"Idempotency-Key": "x" * 300})
    assert bad_key.json()["error"]["code"] == "invalid_idempotency_key"


def test_200_concurrent_runs_keep_gapless_event_logs(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))

    async def create_all() -> list[str]:
        async with httpx2.AsyncClient(base_url=server.url, timeout=60) as client:

            async def one(i: int) -> str:
                body = {
                    "messages": [{"role": "user", "content": f"Compare option {i} with option {i + 1}"}],
                    "mode": "panel",
                }
                response = await client.post("/v1/fusion/runs", json=body)
                assert response.status_code == 201, response.text
                return str(response.json()["run"]["run_id"])

            return await asyncio.gather(*(one(i) for i in range(200)))

    run_ids = asyncio.run(create_all())
    assert len(set(run_ids)) == 200
    for run_id in run_ids:
        events = httpx2.get(f"{server.url}/v1/fusion/runs/{run_id}/events", params={"limit": 1000}).json()["data"]
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["payload"]["state"] == "completed"
