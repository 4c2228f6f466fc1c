"""`POST /v1/responses` through the official `openai` SDK and the OpenAI Agents SDK, over mock members.

Every test starts the real router on a free port; what the run did is read back from the run
store the router wrote.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled
from click.testing import CliRunner

from fusionkit_cli.main import cli
from server.doors.notes import DoorNotes
from server.doors.responses_translate import ToolMap, to_chat_request
from server.protocol.responses import ResponsesRequest
from tests.doors_helpers import (
    SLOW_SYNTH,
    collapse,
    fixture,
    inspection,
    model_call_usage,
    router,
    sse_frames,
    synthesizer_finished,
)
from tests.router_helpers import demo_endpoints, mock_endpoint

QUESTION = "Should I compare Postgres and SQLite for a small web app?"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
ASK_WEATHER = 'Call get_weather with {"city": "Paris"} and tell me what it says.'


def client_for(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


def test_create_answers_a_response_with_usage_over_every_call_and_the_door_recorded(
    tmp_path: Path, live_server: Any
) -> None:
    server = router(tmp_path, live_server)
    response = client_for(server).responses.create(
        model="fusionkit/panel", instructions="Answer briefly.", input=QUESTION, metadata={"ticket": "7"}
    )

    assert response.object == "response" and response.status == "completed" and response.id.startswith("resp_")
    assert [item.type for item in response.output] == ["message"]
    assert "Fused answer drawing on c1, c2, c3" in response.output_text
    assert response.instructions == "Answer briefly." and response.metadata == {"ticket": "7"}
    meta = response.model_extra["fusionkit"]
    assert meta["decision"]["type"] == "synthesize" and meta["candidate_model_ids"] == ["fast", "careful", "structured"]
    assert meta["door"] == {"name": "responses", "tools_not_offered": [], "dropped": []}
    assert response.id == "resp_" + meta["run_id"].removeprefix("run_")

    store = tmp_path / "runs.sqlite3"
    prompt, completion = model_call_usage(store, meta["run_id"])
    assert (response.usage.input_tokens, response.usage.output_tokens) == (prompt, completion)
    assert response.usage.total_tokens == prompt + completion
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    # The members saw the instructions as a system message, then the input.
    assert inspection(store, meta["run_id"])["fusionkit"]["door"] == "responses"
    shown = CliRunner().invoke(cli, ["runs", "show", meta["run_id"], "--store", str(store)])
    assert shown.exit_code == 0 and "door=responses" in shown.output.splitlines()[0]


def test_stream_sends_the_responses_events_in_order_while_the_synthesizer_writes(
    tmp_path: Path, live_server: Any
) -> None:
    server = router(tmp_path, live_server, demo_endpoints(**SLOW_SYNTH))
    store = tmp_path / "runs.sqlite3"
    events: list[Any] = []
    finished_at_first_delta = None
    with client_for(server).responses.with_streaming_response.create(
        model="fusionkit/panel", input=QUESTION, stream=True
    ) as raw:
        run_id = raw.headers["x-fusion-run-id"]
        for event in raw.parse():
            if event.type == "response.output_text.delta" and finished_at_first_delta is None:
                finished_at_first_delta = synthesizer_finished(store, run_id)
            events.append(event)

    assert finished_at_first_delta is False  # the first token left while the synthesizer was still writing
    assert collapse([e.type for e in events]) == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta+",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    created, completed = events[0].response, events[-1].response
    assert created.id == completed.id and created.status == "in_progress" and completed.status == "completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert events[-4].text == text and completed.output[0].content[0].text == text
    assert completed.output[0].id == events[2].item.id == events[4].item_id
    prompt, completion = model_call_usage(store, run_id)
    assert (completed.usage.input_tokens, completed.usage.output_tokens) == (prompt, completion)
    assert completed.model_extra["fusionkit"]["run_id"] == run_id


def test_the_sdk_stream_helper_accumulates_the_same_answer(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    client = client_for(server)
    with client.responses.stream(model="fusionkit/panel", input=QUESTION) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert final.output_text == "".join(deltas) and final.status == "completed"
    # Deterministic mocks: the same request unstreamed gives the same text.
    assert client.responses.create(model="fusionkit/panel", input=QUESTION).output_text == final.output_text


def test_a_tool_call_round_trips_through_previous_response_id(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    client = client_for(server)
    first = client.responses.create(model="fusionkit/panel", input=ASK_WEATHER, tools=[WEATHER])
    assert [item.type for item in first.output] == ["function_call"]
    call = first.output[0]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    assert call.call_id and call.id.startswith("fc_") and call.status == "completed"

    second = client.responses.create(
        model="fusionkit/panel",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}],
        tools=[WEATHER],
    )
    assert second.previous_response_id == first.id
    assert "From the tool result, the answer is sunny, 21 C" in second.output_text
    # The members saw the whole conversation: question, the call, its result.
    request = inspection(tmp_path / "runs.sqlite3", second.model_extra["fusionkit"]["run_id"])["fusionkit"]["request"]
    roles = [m["role"] for m in request["conversation"]]
    assert roles == ["user", "assistant", "tool"] and request["conversation"][1]["tool_calls"][0]["id"] == call.call_id


def test_a_tool_call_streams_as_function_call_events_and_continues_with_full_history(
    tmp_path: Path, live_server: Any
) -> None:
    server = router(tmp_path, live_server)
    client = client_for(server)
    stream = client.responses.create(
        model="fusionkit/panel", input=ASK_WEATHER, tools=[WEATHER], stream=True, store=False
    )
    events = list(stream)
    assert [e.type for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    added, done, completed = events[2].item, events[5].item, events[-1].response
    assert added.type == "function_call" and added.arguments == "" and added.status == "in_progress"
    assert events[3].delta == events[4].arguments == done.arguments and json.loads(done.arguments) == {"city": "Paris"}
    assert completed.output[0].call_id == done.call_id and completed.store is False

    # Codex's way: store false, the whole history sent again with the result.
    history = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": ASK_WEATHER}]},
        done.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": done.call_id, "output": "rain, 9 C"},
    ]
    answer = client.responses.create(model="fusionkit/panel", input=history, tools=[WEATHER], store=False)
    assert "From the tool result, the answer is rain, 9 C" in answer.output_text

    # A response made with store false cannot be continued.
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="fusionkit/panel", previous_response_id=completed.id, input="and tomorrow?")
    assert refused.value.body["code"] == "previous_response_not_found"
    assert refused.value.body["param"] == "previous_response_id"


def test_a_codex_shaped_request_is_accepted_and_its_tools_map_back(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    body = fixture("codex_request.json")["body"]
    response = httpx2.post(server.url + "/v1/responses", json={**body, "stream": False}, timeout=30)
    assert response.status_code == 200, response.text
    door = response.json()["fusionkit"]["door"]
    assert door["tools_not_offered"] == ["web_search", "tool_search"]
    assert any(d.startswith("reasoning items") for d in door["dropped"])
    # The last input item is a tool result: the panel answers from it.
    assert "From the tool result, the answer is Chunk ID" in response.json()["output"][0]["content"][0]["text"]

    # What the members are offered: the namespace's tools flattened, the custom tool as a one-string function.
    notes = DoorNotes(name="responses")
    request = ResponsesRequest.model_validate(body)
    chat, _ = to_chat_request(request, [], ToolMap.of(request.tools, notes), notes)
    offered = {t.function.name: t.function for t in chat.tools or []}
    assert list(offered) == [
        "exec_command",
        "apply_patch",
        "view_image",
        "multi_agent_v1__close_agent",
        "multi_agent_v1__resume_agent",
    ]
    assert offered["apply_patch"].parameters == {
        "type": "object",
        "properties": {"input": {"type": "string", "description": "the tool's whole input"}},
        "required": ["input"],
        "additionalProperties": False,
    }
    assert "*** Begin Patch" in (offered["apply_patch"].description or "")  # the grammar travels in the description
    assert [m.role for m in chat.messages][:4] == ["developer", "developer", "user", "user"]
    calls = [c.function.name for m in chat.messages for c in m.tool_calls or []]
    assert calls == ["apply_patch", "exec_command"]

    # A task that names the custom tool gets a custom_tool_call back, its input a plain string.
    patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch\n"
    ask = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "Use apply_patch: " + json.dumps({"input": patch})}],
    }
    custom = httpx2.post(
        server.url + "/v1/responses", json={**body, "input": [*body["input"], ask], "stream": False}, timeout=30
    )
    assert custom.status_code == 200, custom.text
    [item] = custom.json()["output"]
    assert item["type"] == "custom_tool_call" and item["name"] == "apply_patch" and item["input"] == patch
    assert item["id"].startswith("ctc_") and "namespace" not in item

    # And one that names a tool inside a namespace gets a function_call under the tool's own name.
    ask["content"][0]["text"] = 'Use multi_agent_v1__close_agent with {"target": "agent-1"}'
    spaced = httpx2.post(
        server.url + "/v1/responses", json={**body, "input": [*body["input"], ask], "stream": False}, timeout=30
    )
    [item] = spaced.json()["output"]
    assert (item["type"], item["name"], item["namespace"]) == ("function_call", "close_agent", "multi_agent_v1")
    assert json.loads(item["arguments"]) == {"target": "agent-1"}


def test_a_run_that_fails_after_the_stream_began_ends_with_response_failed(tmp_path: Path, live_server: Any) -> None:
    endpoints = [mock_endpoint("a", fail_rate=1.0), mock_endpoint("b", fail_rate=1.0)]
    server = router(tmp_path, live_server, endpoints, judge_model="a", synthesizer_model="a")
    with httpx2.stream(
        "POST",
        server.url + "/v1/responses",
        json={"model": "fusionkit/panel", "input": "hi", "stream": True},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        frames = [f for f in sse_frames(response) if f.event is not None]
    assert [f.event for f in frames] == ["response.created", "response.in_progress", "response.failed"]
    failed = frames[-1].data
    assert failed is not None and failed["response"]["status"] == "failed"
    assert failed["response"]["error"]["code"] == "all_members_failed"
    assert "0 of 2 panel members answered" in failed["response"]["error"]["message"]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "nope", "input": "hi"}, 404, None),
        ({"model": "fusionkit/panel"}, 400, "input"),
        ({"model": "fusionkit/panel", "input": [{"role": "wizard", "content": "hi"}]}, 400, None),
        ({"model": "fusionkit/panel", "input": "hi", "temperature": 5}, 400, "temperature"),
        ({"model": "fusionkit/panel", "input": "hi", "previous_response_id": "resp_nope"}, 400, "previous_response_id"),
        (
            {
                "model": "fusionkit/panel",
                "input": "hi",
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "name": "x"},
            },
            400,
            "tool_choice",
        ),
        # A name members cannot take (dots): a 500 when the tools were mapped outside the 400 handling.
        ({"model": "fusionkit/panel", "input": "hi", "tools": [{**WEATHER, "name": "get.weather"}]}, 400, None),
    ],
)
def test_bad_requests_answer_in_the_openai_error_shape(
    tmp_path: Path, live_server: Any, body: dict[str, Any], status: int, param: str | None
) -> None:
    server = router(tmp_path, live_server)
    response = httpx2.post(server.url + "/v1/responses", json=body, timeout=30)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if param is not None:
        assert error["param"] == param


def test_the_agents_sdk_runs_an_agent_with_a_function_tool_to_completion(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    set_tracing_disabled(True)
    seen: list[str] = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        seen.append(city)
        return f"sunny in {city}"

    def agent(client: openai.AsyncOpenAI) -> Agent:
        model = OpenAIResponsesModel(model="fusionkit/panel", openai_client=client)
        return Agent(name="forecaster", instructions="Answer weather questions.", tools=[get_weather], model=model)

    async def run(streamed: bool) -> str:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        try:
            if not streamed:
                return str((await Runner.run(agent(client), ASK_WEATHER)).final_output)
            result = Runner.run_streamed(agent(client), ASK_WEATHER)
            async for _ in result.stream_events():
                pass
            return str(result.final_output)
        finally:
            await client.close()

    assert "From the tool result, the answer is sunny in Paris" in asyncio.run(run(streamed=False))
    assert "From the tool result, the answer is sunny in Paris" in asyncio.run(run(streamed=True))
    assert seen == ["Paris", "Paris"]
