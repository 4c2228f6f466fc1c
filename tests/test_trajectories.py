"""`:fuse` and `:step` against a real router with mock endpoints (and one that answers nothing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from server.app import create_app
from tests.router_helpers import demo_endpoints, panel_config
from tests.standins.openai_standin import create_openai_standin
from tests.standins.recorder import StandinState

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = json.loads((ROOT / "configs" / "examples" / "trajectories.json").read_text())


@pytest.fixture
def router(tmp_path: Path, live_server: Any) -> Any:
    return live_server(create_app(panel_config(tmp_path, demo_endpoints(), judge_model="careful")))


def test_fuse_judges_and_synthesizes(router: Any) -> None:
    response = httpx2.post(f"{router.url}/v1/fusion/trajectories:fuse", json=EXAMPLE)
    assert response.status_code == 200, response.text
    data = response.json()
    assert "parse_date now raises InvalidDate" in data["final_output"]
    assert data["decision"]["type"] == "synthesize"
    record = data["judge_synthesis_record"]
    assert record["trajectory_ids"] == ["agent-a", "agent-b", "agent-c"]
    assert set(record["analysis"]["ranking"]) == {"agent-a", "agent-b", "agent-c"}
    assert data["rationale"] == record["analysis"]["rationale"]
    run = httpx2.get(f"{router.url}/v1/fusion/runs/{data['synthesis_id']}/inspect").json()
    assert run["state"] == "completed" and len(run["candidates"]) == 3
    # What the judge saw: each trajectory's steps, verification and diff, labelled.
    assert "verification: failed: leap days rejected" in run["candidates"][1]["text"]


def test_long_fields_are_cut_with_a_marker(router: Any) -> None:
    body = {
        "prompt": "task",
        "trajectories": [{"final_output": "done", "steps": [{"observation": "x" * 5000}]}, {"final_output": "other"}],
    }
    data = httpx2.post(f"{router.url}/v1/fusion/trajectories:fuse", json=body).json()
    run = httpx2.get(f"{router.url}/v1/fusion/runs/{data['synthesis_id']}/inspect").json()
    assert "[... truncated 3000 characters ...]" in run["candidates"][0]["text"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "trajectories": []}, "trajectories"),
        ({"trajectories": [{"final_output": "a"}]}, None),
        ({"prompt": "x", "trajectories": [{"steps": []}]}, "trajectories[0].final_output"),
        (
            {
                "prompt": "x",
                "trajectories": [{"final_output": "a"}, {"final_output": "b", "steps": [{"tool_call": {}}]}],
            },
            "trajectories[1].steps[0].tool_call.name",
        ),
        (
            {"prompt": "x", "trajectories": [{"final_output": "a", "verification": {"status": "great"}}]},
            "trajectories[0].verification.status",
        ),
        ({"prompt": "x", "trajectories": [{"final_output": "a"}], "judge_model": "ghost"}, "judge_model"),
    ],
)
def test_fuse_bad_input_names_the_trajectory_and_field(router: Any, body: dict[str, Any], param: str | None) -> None:
    response = httpx2.post(f"{router.url}/v1/fusion/trajectories:fuse", json=body)
    assert response.status_code == 400
    error = response.json()["error"]
    if param is not None:
        assert error["param"] == param


def test_empty_synthesis_falls_back_to_the_best_verified_trajectory(tmp_path: Path, live_server: Any) -> None:
    state = StandinState(answer="")  # an OpenAI-compatible synthesizer that answers nothing
    upstream = live_server(create_openai_standin(state))
    endpoints = [
        *demo_endpoints(),
        {"id": "silent", "provider": "openai-compatible", "model": "standin-1", "base_url": upstream.url + "/v1"},
    ]
    config = panel_config(
        tmp_path,
        endpoints,
        judge_model="careful",
        synthesizer_model="silent",
        panel_models=["fast", "careful", "structured"],
    )
    server = live_server(create_app(config))
    body = {
        **EXAMPLE,
        "trajectories": [EXAMPLE["trajectories"][2], EXAMPLE["trajectories"][1], EXAMPLE["trajectories"][0]],
    }
    data = httpx2.post(f"{server.url}/v1/fusion/trajectories:fuse", json=body).json()
    assert data["decision"] == {
        "type": "select_candidate",
        "reason": "empty_synthesis",
        "selected_candidate_id": "agent-a",
    }
    assert data["final_output"] == EXAMPLE["trajectories"][0]["final_output"]


def test_step_answers_as_an_openai_completion(router: Any) -> None:
    client = openai.OpenAI(base_url=router.url + "/v1", api_key="x", max_retries=0)
    body = {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Fix the date bug."}]}],
        "trajectories": EXAMPLE["trajectories"],
    }
    reply = client.post("/fusion/trajectory:step", body=body, cast_to=httpx2.Response).json()
    assert reply["object"] == "chat.completion" and reply["choices"][0]["finish_reason"] == "stop"
    assert "agent-a" in reply["choices"][0]["message"]["content"]


def test_step_with_tools_in_flat_and_nested_form_streams_a_call(router: Any) -> None:
    body = {
        "messages": [
            {"role": "user", "content": "Fix the date bug."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c0", "type": "function", "function": {"name": "read_file", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c0", "content": "def parse_date(text): ..."},
            {"role": "user", "content": "now run the tests"},
        ],
        "trajectories": EXAMPLE["trajectories"],
        "tools": [
            {
                "name": "run_tests",
                "parameters": {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
            },
            {"type": "function", "function": {"name": "read_file"}},
            {"description": "a tool without a name is skipped"},
        ],
        "stream": True,
    }
    with httpx2.stream("POST", f"{router.url}/v1/fusion/trajectory:step", json=body) as response:
        assert response.status_code == 200
        frames = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    deltas = [d for f in frames if f["choices"] for d in f["choices"][0]["delta"].get("tool_calls", [])]
    assert deltas[0]["function"]["name"] == "run_tests"
    assert json.loads("".join(d["function"].get("arguments", "") for d in deltas))["path"]
    assert [f["choices"][0]["finish_reason"] for f in frames if f["choices"][0].get("finish_reason")] == ["tool_calls"]


def test_step_bad_input_is_400(router: Any) -> None:
    response = httpx2.post(
        f"{router.url}/v1/fusion/trajectory:step",
        json={"messages": [{"role": "user", "content": "x"}], "trajectories": [{}]},
    )
    assert response.status_code == 400 and response.json()["error"]["param"] == "trajectories[0].final_output"
