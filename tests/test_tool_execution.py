"""External tool execution in native runs: pause in requires_action, feed results, resume; budgets and policy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx2

from server.app import create_app
from tests.router_helpers import demo_endpoints, panel_config

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


def start_run(url: str, **extra: Any) -> str:
    body = {"messages": MESSAGES, "mode": "panel", "tools": [tool()], "tool_policy": "external_pause", **extra}
    response = httpx2.post(f"{url}/v1/fusion/runs", json=body, headers={"Prefer": "respond-async"})
    assert response.status_code == 202, response.text
    return str(response.json()["run"]["run_id"])


def pending_calls(url: str, run_id: str, count: int, timeout_s: float = 10) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        data = httpx2.get(f"{url}/v1/fusion/runs/{run_id}/inspect").json()
        action = data["pending_action"]
        if data["state"] == "requires_action" and action and len(action["tool_calls"]) == count:
            return list(action["tool_calls"])
        assert time.monotonic() < deadline, f"run never paused with {count} calls: {data['state']} {action}"
        time.sleep(0.05)


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
    run_id = start_run(server.url)
    calls = pending_calls(server.url, run_id, 3)
    assert {c["name"] for c in calls} == {"word_count"}
    assert {c["candidate_id"] for c in calls} == {"c1", "c2", "c3"}

    url = f"{server.url}/v1/fusion/runs/{run_id}/tool-results"
    first, *rest = calls
    wrong_id = httpx2.post(url, json={"tool_results": [{"tool_call_id": "call_nope", "output": "4"}]})
    assert wrong_id.status_code == 409 and wrong_id.json()["error"]["code"] == "unknown_tool_call_id"
    wrong_candidate = httpx2.post(
        url, json={"tool_results": [{"tool_call_id": first["tool_call_id"], "candidate_id": "c9", "output": "4"}]}
    )
    assert wrong_candidate.json()["error"]["code"] == "candidate_mismatch"
    wrong_name = httpx2.post(
        url, json={"tool_results": [{"tool_call_id": first["tool_call_id"], "name": "rm_rf", "output": "4"}]}
    )
    assert wrong_name.json()["error"]["code"] == "tool_name_mismatch"
    assert httpx2.post(url, json={"tool_results": "nope"}).status_code == 400

    accepted = httpx2.post(url, json={"tool_results": [{"tool_call_id": first["tool_call_id"], "output": "4 words"}]})
    assert accepted.status_code == 200 and len(accepted.json()["pending"]) == 2
    results = [
        {"tool_call_id": c["tool_call_id"], "candidate_id": c["candidate_id"], "output": "4 words"} for c in rest
    ]
    assert httpx2.post(url, json={"tool_results": results}).status_code == 200

    run = final_state(server.url, run_id)
    assert run["state"] == "completed"
    assert "4 words" in run["final_output"]["content"]
    events = httpx2.get(f"{server.url}/v1/fusion/runs/{run_id}/events", params={"limit": 1000}).json()["data"]
    states = [e["payload"]["state"] for e in events if e["type"] == "run.state"]
    assert states[:3] == ["generating", "requires_action", "generating"]
    assert sum(1 for e in events if e["type"] == "tool.result") == 3

    not_waiting = httpx2.post(url, json={"tool_results": results})
    assert not_waiting.status_code == 409 and not_waiting.json()["error"]["code"] == "run_not_waiting"


def test_identical_read_only_calls_are_executed_once(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    run_id = start_run(server.url, tool_execution={"dedupe_read_only": True})
    # All three members propose the same read-only call: one pending call, shared.
    [call] = pending_calls(server.url, run_id, 1)
    url = f"{server.url}/v1/fusion/runs/{run_id}/tool-results"
    assert httpx2.post(url, json={"tool_results": [{"tool_call_id": call["tool_call_id"], "output": "4"}]}).is_success
    run = final_state(server.url, run_id)
    assert run["state"] == "completed"
    events = httpx2.get(f"{server.url}/v1/fusion/runs/{run_id}/events", params={"limit": 1000}).json()["data"]
    assert sum(1 for e in events if e["type"] == "tool.result") == 1
    plans = [e["payload"] for e in events if e["type"] == "tool.plan"]
    shared = sorted(p["candidate_id"] for p in plans if p["calls"][0].get("deduplicated"))
    assert len(plans) == 3 and len(shared) == 2


def test_side_effects_outside_the_policy_are_refused(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    body = {
        "messages": MESSAGES,
        "mode": "panel",
        "tools": [tool("write")],
        "tool_policy": "external_pause",
        "tool_execution": {"allowed_side_effects": ["read_only"]},
    }
    run = httpx2.post(f"{server.url}/v1/fusion/runs", json=body).json()["run"]
    assert run["state"] == "failed"
    assert "side_effect_not_allowed" in run["error"]["message"]


def test_tool_call_budget_drops_members_over_it(tmp_path: Path, live_server: Any) -> None:
    config = panel_config(tmp_path, demo_endpoints(), budget={"max_tool_calls": 1})
    server = live_server(create_app(config))
    run_id = start_run(server.url)
    [call] = pending_calls(server.url, run_id, 1)
    url = f"{server.url}/v1/fusion/runs/{run_id}/tool-results"
    assert httpx2.post(url, json={"tool_results": [{"tool_call_id": call["tool_call_id"], "output": "4"}]}).is_success
    run = final_state(server.url, run_id)
    data = httpx2.get(f"{server.url}/v1/fusion/runs/{run_id}/inspect").json()
    dropped = [c for c in data["candidates"] if c["status"] == "dropped"]
    assert len(dropped) == 2 and all("max_tool_calls_exceeded" in c["reason"] for c in dropped)
    assert run["state"] == "completed"
