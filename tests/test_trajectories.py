"""`:fuse` and `:step` against a real router with mock endpoints (and one that answers nothing)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from openai.types.chat import ChatCompletionChunk

from bridge.errors import upstream_failure
from server.app import create_app
from server.doors.launch import run_cancelled
from server.engine.judge import JudgeAnalysis
from server.native_http import native_error
from server.protocol.trajectories import Trajectory
from server.trajectories import best_verified, to_candidates
from tests.router_helpers import demo_endpoints, mock_endpoint, panel_config
from tests.standins.openai_standin import create_openai_standin
from tests.standins.recorder import StandinState

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = json.loads((ROOT / "configs" / "examples" / "trajectories.json").read_text())


@pytest.fixture
def router(tmp_path: Path, live_server: Any) -> Any:
    return live_server(create_app(panel_config(tmp_path, demo_endpoints(), judge_model="careful")))


@pytest.fixture
def silent_router(tmp_path: Path, live_server: Any) -> Any:
    """The demo mocks plus `silent`, an OpenAI-compatible endpoint that answers with empty content."""
    upstream = live_server(create_openai_standin(StandinState(answer="")))
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
    return live_server(create_app(config))


def _with_verified_last() -> dict[str, Any]:
    """The example with the one verified trajectory (agent-a) given last, so "first" is not "verified"."""
    first, second, third = EXAMPLE["trajectories"]
    return {**EXAMPLE, "trajectories": [third, second, first]}


def test_fuse_judges_and_synthesizes(router: Any) -> None:
    response = httpx2.post(f"{router.url}/v1/fusion/trajectories:fuse", json=EXAMPLE)
    assert response.status_code == 200, response.text
    data = response.json()
    assert "parse_date now raises InvalidDate" in data["final_output"]
    assert data["decision"] == "synthesize"
    record = data["judge_synthesis_record"]
    assert record["schema"] == "judge-synthesis-record.v1" and record["synthesis_id"] == data["synthesis_id"]
    assert record["input_candidate_ids"] == ["agent-a", "agent-b", "agent-c"]
    assert set(record["metrics"]["analysis"]["ranking"]) == {"agent-a", "agent-b", "agent-c"}
    assert [c["verification_status"] for c in record["metrics"]["trajectory_contributions"]] == [
        "succeeded",
        "failed",
        "failed",
    ]
    assert data["rationale"] == record["rationale"] == record["metrics"]["analysis"]["rationale"]
    run = httpx2.get(f"{router.url}/v1/fusion/runs/{data['synthesis_id']}/inspect").json()
    assert run["state"] == "completed" and len(run["candidates"]) == 3
    # What the judge saw: each trajectory's steps, verification and diff, labelled.
    seen = run["fusionkit"]["candidates"][1]["text"]
    assert "verification: failed (exit code 1): leap days rejected" in seen
    assert 'step 1 tool call: apply_patch({"path": "src/dates.py"}) [id call_1]' in seen


def _wire(trajectory_id: str, final_output: str, **fields: Any) -> dict[str, Any]:
    return {
        "trajectory_id": trajectory_id,
        "model_id": "m",
        "status": "succeeded",
        "final_output": final_output,
        **fields,
    }


TASK = [{"role": "user", "content": "task"}]


def test_a_trajectory_is_recorded_whole_and_packed_only_for_the_judge(router: Any) -> None:
    long_step = {"index": 0, "type": "observation", "text": "x" * 5000}
    body = {"messages": TASK, "trajectories": [_wire("a", "done", steps=[long_step]), _wire("b", "other")]}
    data = httpx2.post(f"{router.url}/v1/fusion/trajectories:fuse", json=body).json()
    run = httpx2.get(f"{router.url}/v1/fusion/runs/{data['synthesis_id']}/inspect").json()
    assert "x" * 5000 in run["fusionkit"]["candidates"][0]["text"]  # no fixed character cut any more


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"messages": TASK, "trajectories": []}, 400, "trajectories"),
        ({"trajectories": [_wire("a", "x")]}, 422, "messages"),
        (
            {"messages": TASK, "trajectories": [{"trajectory_id": "a", "model_id": "m", "status": "succeeded"}]},
            422,
            "trajectories[0].final_output",
        ),
        (
            {
                "messages": TASK,
                "trajectories": [_wire("a", "x"), _wire("b", "y", steps=[{"index": 0, "type": "thinking"}])],
            },
            422,
            "trajectories[1].steps[0].type",
        ),
        (
            {"messages": TASK, "trajectories": [_wire("a", "x", verification={"status": "great"})]},
            422,
            "trajectories[0].verification.status",
        ),
        # Our friendlier file format is for `fusionkit fuse`; the wire speaks the seed's only.
        ({"messages": TASK, "trajectories": [{"id": "a", "final_output": "x"}]}, 422, "trajectories[0].trajectory_id"),
        ({"messages": TASK, "trajectories": [_wire("a", "x")], "judge_model": "ghost"}, 400, "judge_model"),
    ],
)
def test_fuse_bad_input_names_the_trajectory_and_field(
    router: Any, body: dict[str, Any], status: int, param: str
) -> None:
    response = httpx2.post(f"{router.url}/v1/fusion/trajectories:fuse", json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["param"] == param


def test_empty_synthesis_falls_back_to_the_best_verified_trajectory(silent_router: Any) -> None:
    data = httpx2.post(f"{silent_router.url}/v1/fusion/trajectories:fuse", json=_with_verified_last()).json()
    record = data["judge_synthesis_record"]
    assert (data["decision"], record["selected_candidate_id"]) == ("select_candidate", "agent-a")
    assert record["metrics"]["decision_reason"] == "empty_synthesis"
    assert data["final_output"] == EXAMPLE["trajectories"][0]["final_output"]
    assert record["metrics"]["synthesizer_model_id"] == "silent"


def _trajectory(tid: str, status: str | None) -> Trajectory:
    verification = {"status": status} if status else None
    return Trajectory.model_validate(_wire(tid, f"answer of {tid}", verification=verification))


@pytest.mark.parametrize(
    ("statuses", "ranking", "best", "chosen"),
    [
        # The judge's ranking decides among the verified ones.
        ({"a": "succeeded", "b": "failed", "c": "succeeded"}, ["b", "c", "a"], "b", "c"),
        # Without an analysis: the first verified one.
        ({"a": "running", "b": "succeeded", "c": "succeeded"}, None, None, "b"),
        # Nothing verified: the judge's best.
        ({"a": "failed", "b": None, "c": "pending"}, ["a", "c", "b"], "c", "c"),
        # Nothing verified and no analysis: the first.
        ({"a": "failed", "b": None}, None, None, "a"),
    ],
)
def test_fallback_order(
    statuses: dict[str, str | None], ranking: list[str] | None, best: str | None, chosen: str
) -> None:
    trajectories = [_trajectory(tid, status) for tid, status in statuses.items()]
    analysis = JudgeAnalysis(ranking=ranking, best_candidate_id=best) if ranking is not None else None
    picked = best_verified(trajectories)(to_candidates(trajectories), analysis)
    assert (picked.candidate_id, picked.text) == (chosen, f"answer of {chosen}")


def test_fuse_paths_are_matched_literally(router: Any) -> None:
    body = {"messages": TASK, "trajectories": [_wire("a", "a"), _wire("b", "b")]}
    encoded = httpx2.post(f"{router.url}/v1/fusion/trajectories%3Afuse", json=body)
    assert encoded.status_code == 200 and encoded.json()["final_output"]
    for wrong in ("trajectories/fuse", "trajectories", "trajectoriesXfuse", "trajectories:fuse/x"):
        assert httpx2.post(f"{router.url}/v1/fusion/{wrong}", json=body).status_code == 404, wrong
    assert httpx2.get(f"{router.url}/v1/fusion/trajectories:fuse").status_code == 405


def test_unknown_synthesizer_names_the_allowed_ids(router: Any) -> None:
    body = {"messages": TASK, "trajectories": [_wire("a", "a")], "synthesizer_model": "ghost"}
    response = httpx2.post(f"{router.url}/v1/fusion/trajectories:fuse", json=body)
    error = response.json()["error"]
    assert response.status_code == 400 and error["param"] == "synthesizer_model" and error["code"] == "unknown_model"
    assert "ghost" in error["message"] and "fast, careful, structured" in error["message"]


def test_fuse_over_the_wall_clock_budget_times_out(tmp_path: Path, live_server: Any) -> None:
    endpoints = [mock_endpoint("slow", latency_ms=20_000), mock_endpoint("fast")]
    config = panel_config(tmp_path, endpoints, judge_model="slow", budget={"wall_clock_s": 0.3})
    server = live_server(create_app(config))
    body = {"messages": TASK, "trajectories": [_wire("a", "a"), _wire("b", "b")]}
    response = httpx2.post(f"{server.url}/v1/fusion/trajectories:fuse", json=body, timeout=30)
    assert response.status_code == 504, response.text
    error = response.json()["error"]
    assert "budget.wall_clock_s=0.3" in error["message"]
    # The error names its run, in the body and the header, on the native routes too (it did not).
    assert error["run_id"] == response.headers["x-fusion-run-id"]
    assert httpx2.get(f"{server.url}/v1/fusion/runs/{error['run_id']}").json()["state"] == "failed"


def test_a_native_route_keeps_what_the_error_of_a_run_says() -> None:
    error = upstream_failure("0 of 2 panel members answered, 1 needed.")
    error.details = {"failed_members": [{"endpoint_id": "a", "reason": "down"}]}
    error.run_id, error.retry_after = "run_1", "2"
    native = native_error(error)
    assert native.body()["error"]["failed_members"] == [{"endpoint_id": "a", "reason": "down"}]
    assert native.body()["error"]["run_id"] == "run_1" and native.body()["error"]["error_kind"] == "provider_error"
    assert native.headers() == {"x-fusion-run-id": "run_1", "Retry-After": "2"}
    # A run cancelled while :fuse or :step waits: a 409 the SDKs must not retry (it would start the run again).
    assert native_error(run_cancelled()).headers()["x-should-retry"] == "false"


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


def test_step_bad_input_is_422(router: Any) -> None:
    response = httpx2.post(
        f"{router.url}/v1/fusion/trajectory:step",
        json={"messages": [{"role": "user", "content": "x"}], "trajectories": [{}]},
    )
    assert response.status_code == 422 and response.json()["error"]["param"] == "trajectories[0].trajectory_id"


def test_step_without_trajectories_and_with_the_seeds_flat_tool_choice(router: Any) -> None:
    url = f"{router.url}/v1/fusion/trajectory:step"
    plain = httpx2.post(url, json={"messages": [{"role": "user", "content": "Fix the date bug."}]})
    assert plain.status_code == 200, plain.text
    assert plain.json()["model"] == "fusionkit/router" and plain.json()["choices"][0]["message"]["content"]
    body = {
        "messages": [{"role": "user", "content": "Fix the date bug."}],
        "tools": [{"name": "run_tests", "parameters": {"type": "object"}}, {"name": "read_file"}],
        "tool_choice": {"name": "read_file"},
    }
    chosen = httpx2.post(url, json=body).json()
    [call] = chosen["choices"][0]["message"]["tool_calls"]
    assert call["function"]["name"] == "read_file" and chosen["choices"][0]["finish_reason"] == "tool_calls"


def test_step_streams_text_and_usage_through_the_openai_client(router: Any) -> None:
    client = openai.OpenAI(base_url=router.url + "/v1", api_key="x", max_retries=0)
    body = {"messages": [{"role": "user", "content": "Fix the date bug."}], "trajectories": EXAMPLE["trajectories"]}
    whole = client.post("/fusion/trajectory:step", body=body, cast_to=httpx2.Response).json()
    stream = client.post(
        "/fusion/trajectory:step",
        body={**body, "stream": True, "stream_options": {"include_usage": True}},
        cast_to=ChatCompletionChunk,
        stream=True,
        stream_cls=openai.Stream[ChatCompletionChunk],
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({(c.id, c.model) for c in chunks}) == 1
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 3  # token by token
    assert text == whole["choices"][0]["message"]["content"]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == whole["usage"]["total_tokens"] > 0


@pytest.mark.parametrize("stream", [False, True])
def test_empty_step_falls_back_to_the_best_verified_output(silent_router: Any, stream: bool) -> None:
    body = {
        **_with_verified_last(),
        "messages": [{"role": "user", "content": "Fix the date bug."}],
        "judge_model": "silent",
        "stream": stream,
    }
    url = f"{silent_router.url}/v1/fusion/trajectory:step"
    if stream:
        with httpx2.stream("POST", url, json=body) as response:
            frames = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
        text = "".join(f["choices"][0]["delta"].get("content") or "" for f in frames if f["choices"])
        meta = frames[-1]["fusionkit"]
    else:
        data = httpx2.post(url, json=body).json()
        text, meta = data["choices"][0]["message"]["content"], data["fusionkit"]
    assert text == EXAMPLE["trajectories"][0]["final_output"]
    assert meta["decision"] == {
        "type": "select_candidate",
        "reason": "empty_synthesis",
        "selected_candidate_id": "agent-a",
    }
    run = httpx2.get(f"{silent_router.url}/v1/fusion/runs/{meta['run_id']}/inspect").json()
    assert [c["candidate_id"] for c in run["candidates"]] == ["agent-c", "agent-b", "agent-a"]


def test_step_tool_choice_must_name_an_offered_tool(router: Any) -> None:
    body = {
        "messages": [{"role": "user", "content": "x"}],
        "trajectories": [_wire("a", "a")],
        "tools": [{"name": "run_tests"}],
        "tool_choice": {"type": "function", "function": {"name": "delete_repo"}},
    }
    response = httpx2.post(f"{router.url}/v1/fusion/trajectory:step", json=body)
    assert response.status_code == 400, response.text
    assert "'tool_choice' names undefined tool 'delete_repo'" in response.json()["error"]["message"]
