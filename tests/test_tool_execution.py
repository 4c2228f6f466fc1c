"""External tool execution in native runs: pause in requires_action, feed results, resume; budgets and policy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from server.app import create_app
from tests.router_helpers import demo_endpoints, panel_config
from tests.test_runs_api import native_error

MESSAGES = [{"role": "user", "content": "How many words: the quick brown fox"}]


def tool(side_effects: str = "read_only") -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": "word_count",
            "side_effects": side_effects,
            "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
        },
    }


def run_body(**extra: Any) -> dict[str, Any]:
    return {"messages": MESSAGES, "mode": "panel", "tools": [tool()], "tool_policy": "external_pause", **extra}


def start_run(url: str, **extra: Any) -> str:
    response = httpx2.post(f"{url}/v1/fusion/runs", json=run_body(**extra), headers={"Prefer": "respond-async"})
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


def pending_calls(url: str, run_id: str, count: int, timeout_s: float = 10) -> list[dict[str, Any]]:
    """The run's pending calls once `count` are pending (the seed shows the latest as `requires_action`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        data = httpx2.get(f"{url}/v1/fusion/runs/{run_id}/inspect").json()
        pending = data["fusionkit"]["pending_tool_calls"]
        if data["state"] == "requires_action" and len(pending) == count:
            assert data["requires_action"] == pending[-1]
            return list(pending)
        assert time.monotonic() < deadline, f"run never paused with {count} calls: {data['state']} {pending}"
        time.sleep(0.05)


def submission(pause: dict[str, Any], output: str = "4 words", **override: Any) -> dict[str, Any]:
    body = {
        "candidate_id": pause["candidate_id"],
        "tool_call_id": pause["tool_call_id"],
        "tool_name": pause["plan"]["tool_name"],
        "output": output,
    }
    return {**body, **override}


def final_state(url: str, run_id: str, timeout_s: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        run = httpx2.get(f"{url}/v1/fusion/runs/{run_id}").json()
        if run["state"] in ("completed", "failed", "cancelled"):
            return dict(run)
        assert time.monotonic() < deadline, f"run stayed {run['state']}"
        time.sleep(0.05)


def test_members_pause_for_tool_results_and_resume(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    run_id = start_run(server.url, tool_execution={"dedupe_read_only": False})  # each member's call on its own
    calls = pending_calls(server.url, run_id, 3)
    assert {c["plan"]["tool_name"] for c in calls} == {"word_count"}
    assert {c["candidate_id"] for c in calls} == {"c1", "c2", "c3"}
    assert all(c["plan"]["side_effects"] == "read_only" and c["plan"]["schema"] == "tool-call-plan.v1" for c in calls)

    url = f"{server.url}/v1/fusion/runs/{run_id}/tool-results"
    first, *rest = calls
    wrong_id = native_error(
        httpx2.post(url, json=submission(first, tool_call_id="call_nope")), 409, "tool_call_mismatch"
    )
    assert wrong_id["terminal_reason"] == "tool_result_for_wrong_tool_call"
    native_error(httpx2.post(url, json=submission(first, candidate_id="c9")), 409, "tool_candidate_mismatch")
    native_error(httpx2.post(url, json=submission(first, tool_name="rm_rf")), 409, "tool_name_mismatch")
    invalid = httpx2.post(url, json={"tool_results": "nope"})
    assert native_error(invalid, 422, "invalid_request") and len(invalid.json()["detail"]) == 4

    accepted = httpx2.post(url, json=submission(first))
    assert accepted.status_code == 200 and accepted.json()["state"] == "requires_action"
    assert len(accepted.json()["fusionkit"]["pending_tool_calls"]) == 2
    for pause in rest:
        assert httpx2.post(url, json=submission(pause)).status_code == 200

    run = final_state(server.url, run_id)
    assert run["state"] == "completed"
    assert "4 words" in run["final_output"]
    events = httpx2.get(f"{server.url}/v1/fusion/runs/{run_id}/events").json()["events"]
    states = [e["state"] for e in events if e["event_type"] in ("state_changed", "requires_action", "run_resumed")]
    assert states[:3] == ["generating", "requires_action", "generating"]
    assert sum(1 for e in events if e["event_type"] == "tool_execution_recorded") == 3
    assert sum(1 for e in events if e["event_type"] == "tool_call_planned") == 3

    not_waiting = httpx2.post(url, json=submission(first))
    native_error(not_waiting, 409, "run_not_waiting_for_tool")


def test_a_plain_create_answers_when_the_run_pauses(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    body = run_body()
    # Without `Prefer: respond-async` the create waits for the run, but only until it needs tool results.
    created = httpx2.post(f"{server.url}/v1/fusion/runs", json=body, headers={"Idempotency-Key": "k"}, timeout=30)
    assert created.status_code == 200, created.text
    answer = created.json()
    assert (answer["state"], answer["status"]) == ("requires_action", "requires_action")
    pause = answer["inspection"]["requires_action"]
    assert pause["plan"]["tool_name"] == "word_count"

    url = f"{server.url}/v1/fusion/runs/{answer['run_id']}/tool-results"
    assert httpx2.post(url, json=submission(pause, output="4")).status_code == 200
    # A retry of the create now waits for the end of the run it started.
    done = httpx2.post(f"{server.url}/v1/fusion/runs", json=body, headers={"Idempotency-Key": "k"}, timeout=30)
    assert done.json()["idempotency_outcome"] == "replayed" and done.json()["state"] == "completed"


def test_identical_read_only_calls_are_executed_once(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    run_id = start_run(server.url)  # deduplicating read-only calls is the default, as in fusionkit 0.1
    # All three members propose the same read-only call: one pending call, shared.
    [call] = pending_calls(server.url, run_id, 1)
    url = f"{server.url}/v1/fusion/runs/{run_id}/tool-results"
    assert httpx2.post(url, json=submission(call, output="4")).is_success
    run = final_state(server.url, run_id)
    assert run["state"] == "completed"
    events = httpx2.get(f"{server.url}/v1/fusion/runs/{run_id}/events").json()["events"]
    assert sum(1 for e in events if e["event_type"] == "tool_execution_recorded") == 1
    plans = [e["payload"]["fusionkit"]["payload"] for e in events if e["event_type"] == "tool_call_planned"]
    shared = sorted(p["candidate_id"] for p in plans if p["calls"][0].get("deduplicated"))
    assert len(plans) == 3 and len(shared) == 2


@pytest.mark.parametrize(
    ("policy", "refusal"),
    [
        ({}, "side_effect_not_allowed"),  # the default allows read_only alone
        ({"allowed_side_effects": ["read_only", "writes_workspace"]}, "side_effect_requires_policy_environment"),
    ],
)
def test_side_effects_outside_the_policy_are_refused(
    tmp_path: Path, live_server: Any, policy: dict[str, Any], refusal: str
) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    body = run_body(tools=[tool("writes_workspace")], tool_execution=policy)
    run = httpx2.post(f"{server.url}/v1/fusion/runs", json=body).json()
    assert run["state"] == "failed"
    assert refusal in run["terminal_error"]["message"]


def test_a_writing_tool_runs_under_a_named_policy_and_environment(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    policy = {"allowed_side_effects": ["writes_workspace"], "policy_id": "p-1", "environment": "sandbox-1"}
    run_id = start_run(server.url, tools=[tool("writes_workspace")], tool_execution=policy)
    calls = pending_calls(server.url, run_id, 3)  # identical writing calls are not deduplicated: each runs
    assert {c["plan"]["side_effects"] for c in calls} == {"writes_workspace"}
    assert len({c["tool_call_id"] for c in calls}) == 3


def test_tool_call_budget_drops_members_over_it(tmp_path: Path, live_server: Any) -> None:
    config = panel_config(tmp_path, demo_endpoints(), budget={"max_tool_calls": 1})
    server = live_server(create_app(config))
    run_id = start_run(server.url)
    [call] = pending_calls(server.url, run_id, 1)
    url = f"{server.url}/v1/fusion/runs/{run_id}/tool-results"
    assert httpx2.post(url, json=submission(call, output="4")).is_success
    run = final_state(server.url, run_id)
    data = httpx2.get(f"{server.url}/v1/fusion/runs/{run_id}/inspect").json()
    dropped = [c for c in data["fusionkit"]["candidates"] if c["status"] == "dropped"]
    assert len(dropped) == 2 and all("max_tool_calls_exceeded" in c["reason"] for c in dropped)
    assert run["state"] == "completed"


def test_executor_mode_is_refused_without_an_executor(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    # The seed's answer to a tool call it is asked to execute itself: executor_not_configured.
    refused = httpx2.post(f"{server.url}/v1/fusion/runs", json=run_body(tool_policy="allowed")).json()
    assert refused["state"] == "failed"
    error = refused["terminal_error"]
    assert (error["error_kind"], error["error_code"], error["terminal_reason"]) == (
        "tool_denied",
        "executor_not_configured",
        "executor_mode_not_configured",
    )
    chat = httpx2.post(
        f"{server.url}/v1/chat/completions",
        json={
            "model": "fusionkit/panel",
            "messages": MESSAGES,
            "tools": [tool()],
            "fusion": {"tool_execution": {"mode": "executor"}},
        },
    )
    assert chat.status_code == 400 and chat.json()["error"]["code"] == "executor_not_configured"
    # Without tools there is nothing to execute: the run answers, as the seed's does.
    plain = httpx2.post(f"{server.url}/v1/fusion/runs", json={"messages": MESSAGES, "tool_policy": "allowed"})
    assert plain.json()["state"] == "completed"
