"""The native runs API against a real router: idempotency, async runs, events, cancel, inspect, errors.

Shapes are the seed's (tests/test_seed_conformance.py holds them to fusionkit-server 0.1.1 key by
key); these tests check what the answers say.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from server.app import create_app
from tests.livesrv import LiveServer
from tests.router_helpers import demo_endpoints, panel_config
from tests.seed.scenarios import run_request
from tests.seed.standin import StandinApp

MESSAGES = [{"role": "user", "content": "Compare two ways to cache HTTP responses."}]


def wait_for_state(url: str, run_id: str, states: set[str], timeout_s: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        run = httpx2.get(f"{url}/v1/fusion/runs/{run_id}").json()
        if run["state"] in states:
            return dict(run)
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} stayed {run['state']}, never reached {states}")
        time.sleep(0.05)


def native_error(response: httpx2.Response, status: int, code: str) -> dict[str, Any]:
    """The error body of a native route: the seed's NativeRunError fields and the OpenAI ones."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json"), response.text
    error = response.json()["error"]
    assert error["error_code"] == error["code"] == code, error
    assert {"error_kind", "retryable", "owner", "terminal_reason", "message", "type", "param"} <= set(error)
    return dict(error)


def test_create_waits_for_the_run_and_replays_by_idempotency_key(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    body = run_request("req-1", mode="panel")
    first = httpx2.post(f"{server.url}/v1/fusion/runs", json=body, headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 200, first.text
    created = first.json()
    assert (created["idempotency_outcome"], created["state"], created["status"]) == (
        "created",
        "completed",
        "succeeded",
    )
    inspection = created["inspection"]
    assert inspection["final_output"] and inspection["event_cursor"] == created["event_cursor"]
    assert len(inspection["model_call_ids"]) == 5  # three members, the judge, the synthesizer

    again = httpx2.post(f"{server.url}/v1/fusion/runs", json=body, headers={"Idempotency-Key": "k-1"})
    assert again.status_code == 200 and again.json()["idempotency_outcome"] == "replayed"
    assert again.json()["run_id"] == created["run_id"]
    # The replay made no model call: still one run, and its event log did not grow.
    listed = httpx2.get(f"{server.url}/v1/fusion/runs").json()
    assert [r["run_id"] for r in listed["data"]] == [created["run_id"]] and listed["has_more"] is False
    assert again.json()["event_cursor"] == created["event_cursor"]
    summary = httpx2.get(f"{server.url}/v1/fusion/runs/{created['run_id']}").json()
    assert summary["idempotency_key"] == "k-1" and summary["request_hash"].startswith("sha256:")
    assert summary["final_output"] == inspection["final_output"]

    conflict = httpx2.post(
        f"{server.url}/v1/fusion/runs", json={**body, "verify": True}, headers={"Idempotency-Key": "k-1"}
    )
    error = native_error(conflict, 409, "idempotency_conflict")
    assert error["terminal_reason"] == "idempotency_key_reused_with_different_request"


def test_async_create_then_poll_events_to_completion(tmp_path: Path, live_server: Any) -> None:
    endpoints = demo_endpoints(fast={"latency_ms": 300})
    server = live_server(create_app(panel_config(tmp_path, endpoints)))
    created = httpx2.post(
        f"{server.url}/v1/fusion/runs",
        json={"messages": MESSAGES, "mode": "panel"},
        headers={"Prefer": "respond-async"},
    )
    assert created.status_code == 202
    run_id = created.json()["run_id"]
    assert created.headers["location"] == f"/v1/fusion/runs/{run_id}"
    assert "inspection" not in created.json()

    seen: list[dict[str, Any]] = []
    cursor = 0
    deadline = time.monotonic() + 15
    while not seen or seen[-1]["state"] not in ("completed", "failed"):
        assert time.monotonic() < deadline, "run did not finish"
        page = httpx2.get(f"{server.url}/v1/fusion/runs/{run_id}/events", params={"after": cursor, "limit": 3}).json()
        assert len(page["events"]) <= 3
        seen += page["events"]
        cursor = page["next_event_cursor"]
        if not page["events"]:
            time.sleep(0.05)
    assert [e["event_seq"] for e in seen] == list(range(1, len(seen) + 1))
    assert seen[0]["event_type"] == "run_queued" and seen[0]["state"] == "queued"
    assert seen[-1]["event_type"] == "fusion_recorded" and seen[-1]["status"] == "succeeded"
    assert {e["event_type"] for e in seen} >= {"state_changed", "model_call_recorded", "candidate_recorded"}
    # Every event of ours is still there, under `payload.fusionkit`, with its own type.
    assert [e["payload"]["fusionkit"]["type"] for e in seen][:2] == ["run.created", "run.state"]


def test_cancel_mid_panel_ends_the_run_cancelled(tmp_path: Path, live_server: Any) -> None:
    endpoints = demo_endpoints(structured={"latency_ms": 30_000})
    server = live_server(create_app(panel_config(tmp_path, endpoints)))
    created = httpx2.post(
        f"{server.url}/v1/fusion/runs",
        json={"messages": MESSAGES, "mode": "panel"},
        headers={"Prefer": "respond-async"},
    )
    run_id = created.json()["run_id"]
    wait_for_state(server.url, run_id, {"generating"})
    cancelled = httpx2.post(f"{server.url}/v1/fusion/runs/{run_id}/cancel")
    assert cancelled.status_code == 200
    run = cancelled.json()
    assert (run["state"], run["status"], run["terminal_reason"]) == ("cancelled", "canceled", "cancel_requested")
    assert run["terminal_error"]["error_code"] == "cancelled"
    # A finished run can be asked to cancel again: it just reports its state.
    assert httpx2.post(f"{server.url}/v1/fusion/runs/{run_id}/cancel").json()["state"] == "cancelled"


def test_inspect_tells_what_each_model_said_and_why(tmp_path: Path, live_server: Any) -> None:
    config = panel_config(tmp_path, demo_endpoints(fast={"fail_rate": 1.0}), judge_model="careful")
    server = live_server(create_app(config))
    created = httpx2.post(f"{server.url}/v1/fusion/runs", json={"messages": MESSAGES, "mode": "panel"}).json()
    data = httpx2.get(f"{server.url}/v1/fusion/runs/{created['run_id']}/inspect").json()
    # The seed's view: the candidates that answered, ranked by the judge, with their stored answers.
    assert [c["candidate_id"] for c in data["candidates"]] == ["c2", "c3"]
    assert {c["rank"] for c in data["candidates"]} == {1, 2}
    text = httpx2.get(server.url + data["candidates"][0]["artifact"]["uri"])
    assert text.status_code == 200 and text.text.startswith("[offline mock model mock-cautious]")
    record = data["judge_synthesis_record"]
    assert record["decision"] == "synthesize" and record["input_candidate_ids"] == ["c2", "c3"]
    assert record["metrics"]["analysis"]["ranking"] and record["final_output"] == data["final_output"]
    assert data["final_output"] == created["inspection"]["final_output"] and data["requires_action"] is None
    # Ours besides: the dropped member and why, each candidate's text, the decision.
    by_id = {c["candidate_id"]: c for c in data["fusionkit"]["candidates"]}
    assert by_id["c1"]["status"] == "dropped" and "failed on purpose" in by_id["c1"]["reason"]
    assert by_id["c2"]["text"] == text.text
    assert data["fusionkit"]["decision"]["type"] == "synthesize"
    events = httpx2.get(f"{server.url}/v1/fusion/runs/{created['run_id']}/events").json()["events"]
    dropped = [e for e in events if e["event_type"] == "error_recorded"]
    assert [(e["candidate_id"], e["state"], e["payload"]["error"]["error_code"]) for e in dropped] == [
        ("c1", "generating", "candidate_dropped")
    ]


@pytest.mark.parametrize("run_id", ["../../etc/passwd", "run_x", "..%2F..%2Fetc", "run_" + "0" * 24, "%00"])
def test_unknown_and_malformed_run_ids_are_404(tmp_path: Path, live_server: Any, run_id: str) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    for suffix in ("", "/inspect", "/events"):
        response = httpx2.get(f"{server.url}/v1/fusion/runs/{run_id}{suffix}")
        assert response.status_code == 404, (run_id, suffix)
        # A path that names no route answers the app's 404; one that names a route, the seed's run_not_found.
        error = response.json()["error"]
        if error["code"] != "404":
            assert (error["error_code"], error["terminal_reason"]) == ("run_not_found", "unknown_run"), error
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("runs.sqlite3")) == []


def test_bad_run_requests_answer_the_seed_statuses(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    url = f"{server.url}/v1/fusion/runs"
    empty = native_error(httpx2.post(url, json={"messages": []}), 422, "invalid_request")
    assert empty["param"] == "messages"
    bad_mode = httpx2.post(url, json={"messages": MESSAGES, "mode": "mob"})
    assert native_error(bad_mode, 422, "invalid_request")["param"] == "mode"
    assert bad_mode.json()["detail"][0]["loc"] == ["body", "mode"]
    unknown_field = httpx2.post(url, json={"messages": MESSAGES, "contract_version": "x"})
    assert unknown_field.json()["detail"][0]["type"] == "extra_forbidden"
    native_error(httpx2.post(url, content=b"{not json"), 422, "invalid_request")
    ghost = native_error(
        httpx2.post(url, json={"messages": MESSAGES, "requested_models": ["ghost"]}), 400, "unknown_endpoint"
    )
    assert ghost["error_kind"] == "validation_error" and ghost["retryable"] is False
    bad_key = httpx2.post(url, json={"messages": MESSAGES}, headers={"Idempotency-Key": "x" * 300})
    native_error(bad_key, 400, "invalid_idempotency_key")
    created = httpx2.post(url, json={"messages": MESSAGES, "mode": "single"}).json()
    bad_after = httpx2.get(f"{url}/{created['run_id']}/events", params={"after": -1})
    assert native_error(bad_after, 422, "invalid_request")["param"] == "after"


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
                assert response.status_code == 200, response.text
                return str(response.json()["run_id"])

            return await asyncio.gather(*(one(i) for i in range(200)))

    run_ids = asyncio.run(create_all())
    assert len(set(run_ids)) == 200
    for run_id in run_ids:
        events = httpx2.get(f"{server.url}/v1/fusion/runs/{run_id}/events").json()["events"]
        assert [e["event_seq"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["event_type"] == "fusion_recorded"


def test_a_retry_during_a_synchronous_create_gets_the_same_answer(tmp_path: Path) -> None:
    gate = threading.Event()
    upstream = StandinApp(gate=gate)
    with LiveServer(upstream) as up:
        endpoint = {"id": "up", "provider": "openai-compatible", "model": "standin", "base_url": up.url + "/v1"}
        app = create_app(panel_config(tmp_path, [endpoint], default_mode="single"))
        runs = app.state.runs
        waits: list[str] = []
        settled = threading.Event()
        wait_settled = runs.wait_settled

        async def spy(run_id: str) -> Any:
            waits.append(run_id)
            if len(waits) == 2:  # the retry is waiting for the run, not answering what it sees now
                settled.set()
            return await wait_settled(run_id)

        runs.wait_settled = spy
        answers: dict[str, httpx2.Response] = {}
        body = {"messages": MESSAGES, "mode": "single"}

        def create(name: str) -> None:
            answers[name] = httpx2.post(
                f"{router.url}/v1/fusion/runs", json=body, headers={"Idempotency-Key": "retry-me"}, timeout=30
            )
            settled.set()

        with LiveServer(app) as router:
            original = threading.Thread(target=create, args=("original",))
            retry = threading.Thread(target=create, args=("retry",))
            try:
                original.start()
                assert upstream.arrived.wait(timeout=30), "the run never called its model"
                settled.clear()
                retry.start()
                assert settled.wait(timeout=30), "the retry neither answered nor waited"
            finally:
                gate.set()
                original.join(timeout=30)
                retry.join(timeout=30)
    first, second = answers["original"].json(), answers["retry"].json()
    assert (first["idempotency_outcome"], second["idempotency_outcome"]) == ("created", "replayed")
    assert second["state"] == first["state"] == "completed"
    assert second["run_id"] == first["run_id"]
    assert second["inspection"]["final_output"] == first["inspection"]["final_output"] is not None


def test_a_seed_client_reads_the_answer_where_the_seed_puts_it(tmp_path: Path, live_server: Any) -> None:
    config = panel_config(tmp_path, demo_endpoints())
    server = live_server(create_app(config))
    created = httpx2.post(f"{server.url}/v1/fusion/runs", json=run_request("req-2", mode="heuristic")).json()
    events = httpx2.get(f"{server.url}/v1/fusion/runs/{created['run_id']}/events").json()
    queued = events["events"][0]
    assert queued["payload"]["request"]["request_id"] == "req-2" and queued["payload"]["request"]["mode"] == "router"
    assert events["next_event_cursor"] == created["event_cursor"] == events["events"][-1]["event_seq"]
    completed = events["events"][-1]["payload"]["fusion_record"]
    assert completed["final_output"] == created["inspection"]["final_output"]
    assert completed["schema"] == "fusion-record.v1" and completed["run_id"] == created["run_id"]
