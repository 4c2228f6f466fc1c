"""A chat request with external tool execution answers as soon as the run settles waiting for the
tool results (it used to hang for ever): the calls to run, the run id, and where to send the
results; the run goes on once they arrive. Plus the run-unique ids of colliding member calls and
the tool-round budget."""

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
from tests.test_tool_execution import final_state

WORD_COUNT = {
    "type": "function",
    "function": {
        "name": "word_count",
        "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
    },
}
ASK = [{"role": "user", "content": "How many words: the quick brown fox"}]
EXTERNAL = {"tool_execution": {"mode": "external"}}


def _chat(url: str, stream: bool, fusion: dict[str, Any] = EXTERNAL) -> httpx2.Response:
    body = {"model": "fusionkit/panel", "messages": ASK, "tools": [WORD_COUNT], "fusion": fusion, "stream": stream}
    return httpx2.post(url + "/v1/chat/completions", json=body, timeout=30)


def _submit(url: str, run_id: str, call: dict[str, Any], output: str = "4 words") -> None:
    body = {"candidate_id": call["candidate_id"], "tool_call_id": call["tool_call_id"], "tool_name": call["name"]}
    answer = httpx2.post(f"{url}/v1/fusion/runs/{run_id}/tool-results", json={**body, "output": output})
    assert answer.status_code == 200, answer.text


@pytest.mark.parametrize("stream", [False, True])
def test_a_chat_run_that_waits_for_tools_answers_with_the_calls_and_goes_on(
    tmp_path: Path, live_server: Any, stream: bool
) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    answer = _chat(server.url, stream)
    assert answer.status_code == 200
    if stream:
        frames = [json.loads(line[6:]) for line in answer.text.splitlines() if line.startswith("data: {")]
        assert answer.text.rstrip().endswith("data: [DONE]")
        deltas = [f["choices"][0] for f in frames if f["choices"]]
        calls = [c for d in deltas for c in d["delta"].get("tool_calls") or [] if "id" in c]
        assert [d["finish_reason"] for d in deltas if d["finish_reason"]] == ["tool_calls"]
        meta = frames[-1]["fusionkit"]
    else:
        choice = answer.json()["choices"][0]
        calls = choice["message"]["tool_calls"]
        assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
        meta = answer.json()["fusionkit"]
    run_id = meta["run_id"]
    assert (meta["state"], meta["status"]) == ("requires_action", "requires_action")
    action = meta["requires_action"]
    assert action["submit_to"] == f"/v1/fusion/runs/{run_id}/tool-results"
    # All three members called the same read-only tool alike: one call, shared (the default policy).
    [pending] = action["tool_calls"]
    assert [c["id"] for c in calls] == [pending["tool_call_id"]] and pending["name"] == "word_count"
    assert json.loads(pending["arguments"]) == {"text": "How many words: the quick brown fox"}

    _submit(server.url, run_id, pending)
    run = final_state(server.url, run_id)
    assert run["state"] == "completed"
    inspection = httpx2.get(f"{server.url}/v1/fusion/runs/{run_id}/inspect").json()
    assert "4 words" in inspection["final_output"]


def test_members_that_number_their_calls_alike_get_run_unique_ids(tmp_path: Path, live_server: Any) -> None:
    # Both stand-ins call their first tool `call_0_word_count`, as servers that number calls per answer do.
    members = []
    for name in ("a", "b"):
        upstream = live_server(create_openai_standin(StandinState()))
        members.append({"id": name, "provider": "openai-compatible", "model": name, "base_url": upstream.url + "/v1"})
    server = live_server(create_app(panel_config(tmp_path, [*members, *demo_endpoints()], panel_models=["a", "b"])))
    fusion = {"tool_execution": {"mode": "external", "dedupe_read_only": False}}
    meta = _chat(server.url, False, fusion).json()["fusionkit"]
    calls = meta["requires_action"]["tool_calls"]
    # Whichever member paused first keeps its id; the other's is made unique with its candidate id.
    ids = {c["tool_call_id"]: c["candidate_id"] for c in calls}
    second = next(candidate for call_id, candidate in ids.items() if call_id != "call_0_word_count")
    assert set(ids) == {"call_0_word_count", f"{second}.call_0_word_count"}
    for call in calls:
        _submit(server.url, meta["run_id"], call, output=f"answer for {call['candidate_id']}")
    assert final_state(server.url, meta["run_id"])["state"] == "completed"


def test_a_member_over_the_tool_round_budget_is_dropped(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints(), budget={"max_tool_rounds": 0})))
    answer = _chat(server.url, False)
    assert answer.status_code == 502  # every member wanted a tool round the budget does not allow
    error = answer.json()["error"]
    assert "0 of 3 panel members answered" in error["message"] and "max_tool_rounds_exceeded" in error["message"]


def test_a_paused_stream_that_asked_for_usage_ends_with_one_usage_chunk(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    stream = client.chat.completions.create(
        model="fusionkit/panel",
        messages=ASK,
        tools=[WORD_COUNT],
        stream=True,
        stream_options={"include_usage": True},
        extra_body={"fusion": EXTERNAL},
    )
    chunks = list(stream)
    # Before, the paused stream ended with [DONE] and no usage chunk at all.
    assert [c.usage is not None for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert chunks[-1].choices == [] and chunks[-1].id == chunks[0].id
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    meta = chunks[-2].model_extra["fusionkit"]
    for call in meta["requires_action"]["tool_calls"]:
        _submit(server.url, meta["run_id"], call)
    assert final_state(server.url, meta["run_id"])["state"] == "completed"
