"""`POST /v1/messages` (and count_tokens, `HEAD /`) through the official `anthropic` SDK, over mock members.

Every test starts the real router on a free port; what the run did is read back from the run
store the router wrote.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from click.testing import CliRunner

from bridge.http import DEFAULT_MAX_BODY_BYTES
from fusionkit_cli.main import cli
from server.app import create_app
from server.doors.messages_translate import TOOL_ERROR_MARK, to_chat_request
from server.doors.notes import DoorNotes
from server.protocol.messages import MessagesRequest
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
from tests.router_helpers import demo_endpoints, mock_endpoint, panel_config

QUESTION = [{"role": "user", "content": "Should I compare Postgres and SQLite for a small web app?"}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
ASK_WEATHER = [{"role": "user", "content": 'Call get_weather with {"city": "Paris"} and tell me what it says.'}]


def client_for(server: Any, **kwargs: Any) -> anthropic.Anthropic:
    kwargs.setdefault("api_key", "x")
    return anthropic.Anthropic(base_url=server.url, max_retries=0, **kwargs)


def test_create_answers_a_message_with_usage_over_every_call_and_the_door_recorded(
    tmp_path: Path, live_server: Any
) -> None:
    server = router(tmp_path, live_server)
    message = client_for(server).messages.create(
        model="fusionkit/panel", max_tokens=1024, system="Answer briefly.", messages=QUESTION
    )

    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.stop_reason == "end_turn" and message.model == "fusionkit/panel"
    assert [block.type for block in message.content] == ["text"]
    assert "Fused answer drawing on c1, c2, c3" in message.content[0].text
    meta = message.model_extra["fusionkit"]
    assert meta["decision"]["type"] == "synthesize" and meta["door"]["name"] == "messages"

    store = tmp_path / "runs.sqlite3"
    assert (message.usage.input_tokens, message.usage.output_tokens) == model_call_usage(store, meta["run_id"])
    assert inspection(store, meta["run_id"])["fusionkit"]["door"] == "messages"
    shown = CliRunner().invoke(cli, ["runs", "show", meta["run_id"], "--store", str(store)])
    assert shown.exit_code == 0 and "door=messages" in shown.output.splitlines()[0]


def test_stream_sends_anthropic_events_in_order_while_the_synthesizer_writes(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server, demo_endpoints(**SLOW_SYNTH))
    store = tmp_path / "runs.sqlite3"
    events: list[Any] = []
    finished_at_first_delta = None
    with client_for(server).messages.with_streaming_response.create(
        model="fusionkit/panel", max_tokens=1024, messages=QUESTION, stream=True
    ) as raw:
        run_id = raw.headers["x-fusion-run-id"]
        for event in raw.parse():
            if event.type == "content_block_delta" and finished_at_first_delta is None:
                finished_at_first_delta = synthesizer_finished(store, run_id)
            events.append(event)

    assert finished_at_first_delta is False  # the first token left while the synthesizer was still writing
    assert collapse([e.type for e in events]) == [
        "message_start",
        "content_block_start",
        "content_block_delta+",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[0].message, events[-2]
    assert start.id.startswith("msg_") and start.content == [] and start.stop_reason is None
    assert delta.delta.stop_reason == "end_turn"
    assert (delta.usage.input_tokens, delta.usage.output_tokens) == model_call_usage(store, run_id)
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert "Fused answer drawing on" in text
    assert {e.index for e in events if e.type.startswith("content_block")} == {0}


def test_pings_keep_the_stream_alive_while_the_panel_and_judge_work(tmp_path: Path, live_server: Any) -> None:
    # A slow judge: the stream must carry pings, never anything before message_start.
    server = live_server(
        create_app(
            panel_config(
                tmp_path, demo_endpoints(fast={"latency_ms": 300}), judge_model="fast", synthesizer_model="careful"
            ),
            keepalive_s=0.05,
        )
    )
    body = {"model": "fusionkit/panel", "max_tokens": 100, "messages": QUESTION, "stream": True}
    with httpx2.stream("POST", server.url + "/v1/messages?beta=true", json=body, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = list(sse_frames(response))
    kinds = [f.event for f in frames]
    assert all(f.data is not None and f.data["type"] == f.event for f in frames)  # every frame named by its type
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    before_text = kinds[: kinds.index("content_block_start")]
    assert before_text[0] == "message_start" and set(before_text[1:]) == {"ping"} and len(before_text) > 2


def test_a_tool_call_round_trips_as_tool_use_and_tool_result(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    client = client_for(server)
    first = client.messages.create(model="fusionkit/panel", max_tokens=512, messages=ASK_WEATHER, tools=[WEATHER])
    assert first.stop_reason == "tool_use"
    [use] = first.content
    assert use.type == "tool_use" and use.id.startswith("toolu_") and use.name == "get_weather"
    assert use.input == {"city": "Paris"}

    answer = client.messages.create(
        model="fusionkit/panel",
        max_tokens=512,
        tools=[WEATHER],
        messages=[
            *ASK_WEATHER,
            {"role": "assistant", "content": first.content},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny, 21 C"}]},
        ],
    )
    assert answer.stop_reason == "end_turn"
    assert "From the tool result, the answer is sunny, 21 C" in answer.content[0].text


def test_a_streamed_tool_call_arrives_as_input_json_delta(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    with client_for(server).messages.stream(
        model="fusionkit/panel", max_tokens=512, messages=ASK_WEATHER, tools=[WEATHER]
    ) as stream:
        events = [
            e
            for e in stream
            if e.type
            in {
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            }
        ]
        final = stream.get_final_message()
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[1].content_block.type == "tool_use" and events[1].content_block.input == {}
    assert events[2].delta.type == "input_json_delta" and json.loads(events[2].delta.partial_json) == {"city": "Paris"}
    assert final.stop_reason == "tool_use" and final.content[0].input == {"city": "Paris"}
    assert final.content[0].id.startswith("toolu_")


def test_a_claude_code_shaped_request_is_accepted(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    captured = fixture("claude_code_request.json")
    body = captured["body"]
    headers = {**captured["headers"], "x-api-key": "anything"}
    with httpx2.stream(
        "POST", f"{server.url}/v1/messages?{captured['query']}", json=body, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200
        frames = [f for f in sse_frames(response) if f.event != "ping"]
    assert frames[0].event == "message_start" and frames[-1].event == "message_stop"
    delta = frames[-2].data
    assert delta is not None and delta["delta"]["stop_reason"] == "end_turn"
    door = delta["fusionkit"]["door"]
    assert any(d.startswith("thinking:") for d in door["dropped"])
    assert any(d.startswith("thinking blocks of earlier turns") for d in door["dropped"])
    # Its `thinking: {type: adaptive}` asks for the run's reasoning: a thinking block before the text.
    assert frames[1].data is not None and frames[1].data["content_block"]["type"] == "thinking"
    deltas = [f.data["delta"] for f in frames if f.event == "content_block_delta" and f.data]
    text = "".join(d["text"] for d in deltas if d["type"] == "text_delta")
    # The panel answered from the failed tool result: the error mark and the result travelled.
    assert f"From the tool result, the answer is {TOOL_ERROR_MARK}" in text

    # What the members got: system text in place, the call, its result marked as an error.
    chat = to_chat_request(MessagesRequest.model_validate(body), DoorNotes(name="messages"))
    assert [m.role for m in chat.messages] == ["system", "user", "system", "assistant", "tool"]
    assert chat.messages[0].content.startswith("x-anthropic-billing-header")  # the system blocks, joined
    assert chat.messages[3].tool_calls and chat.messages[3].tool_calls[0].function.name == "Bash"
    assert (
        chat.messages[4].tool_call_id == "toolu_01abc" and chat.messages[4].content == f"{TOOL_ERROR_MARK}\nExit code 1"
    )
    assert [t.function.name for t in chat.tools or []] == ["Agent", "Bash", "Read", "TaskCreate", "WebFetch", "Write"]
    assert chat.max_tokens == 32000 and chat.stream is True


def test_server_tools_are_not_offered_and_the_answer_says_so(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    message = client_for(server).messages.create(
        model="fusionkit/panel",
        max_tokens=256,
        messages=QUESTION,
        tools=[{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}, WEATHER],
        tool_choice={"type": "auto", "disable_parallel_tool_use": True},
        thinking={"type": "enabled", "budget_tokens": 2000},
    )
    assert message.model_extra["fusionkit"]["door"]["tools_not_offered"] == ["web_search"]


def test_count_tokens_estimates_the_prompt(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    client = client_for(server)
    short = client.messages.count_tokens(model="fusionkit/panel", messages=QUESTION)
    longer = client.messages.count_tokens(
        model="fusionkit/panel", messages=QUESTION, system="You are careful. " * 50, tools=[WEATHER]
    )
    assert 0 < short.input_tokens < longer.input_tokens
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nope", messages=QUESTION)


def test_head_preflight_answers_200(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    assert httpx2.head(server.url + "/").status_code == 200


@pytest.mark.parametrize(
    ("body", "exception", "kind"),
    [
        ({"model": "fusionkit/panel", "messages": QUESTION}, anthropic.BadRequestError, "invalid_request_error"),
        ({"model": "nope", "max_tokens": 10, "messages": QUESTION}, anthropic.NotFoundError, "not_found_error"),
        (
            {"model": "fusionkit/panel", "max_tokens": 10, "messages": [{"role": "tool", "content": "x"}]},
            anthropic.BadRequestError,
            "invalid_request_error",
        ),
        (
            {
                "model": "fusionkit/panel",
                "max_tokens": 10,
                "messages": QUESTION,
                "tools": [WEATHER],
                "tool_choice": {"type": "tool", "name": "nope"},
            },
            anthropic.BadRequestError,
            "invalid_request_error",
        ),
    ],
)
def test_bad_requests_answer_in_anthropics_error_shape(
    tmp_path: Path, live_server: Any, body: dict[str, Any], exception: type[Exception], kind: str
) -> None:
    server = router(tmp_path, live_server)
    with pytest.raises(exception) as raised:
        client_for(server).post("/v1/messages", cast_to=object, body=body)
    error = raised.value.body  # type: ignore[attr-defined]
    assert error["type"] == "error" and error["error"]["type"] == kind and error["error"]["message"]
    assert set(error["error"]) == {"type", "message"}


def test_auth_takes_x_api_key_or_bearer_and_refuses_in_anthropics_shape(
    tmp_path: Path, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOORS_KEY", "door-key-123")
    server = router(tmp_path, live_server, server={"api_key_env": "DOORS_KEY"})
    ok = client_for(server, api_key="door-key-123").messages.create(
        model="fusionkit/panel", max_tokens=64, messages=QUESTION
    )
    assert ok.content
    bearer = client_for(server, api_key=None, auth_token="door-key-123")
    assert bearer.messages.create(model="fusionkit/panel", max_tokens=64, messages=QUESTION).content
    with pytest.raises(anthropic.AuthenticationError) as refused:
        client_for(server, api_key="wrong").messages.create(model="fusionkit/panel", max_tokens=64, messages=QUESTION)
    assert refused.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert "door-key-123" not in json.dumps(refused.value.body)


def test_a_run_that_fails_after_the_stream_began_ends_with_an_error_event(tmp_path: Path, live_server: Any) -> None:
    endpoints = [mock_endpoint("a", fail_rate=1.0), mock_endpoint("b", fail_rate=1.0)]
    server = router(tmp_path, live_server, endpoints, judge_model="a", synthesizer_model="a")
    stream = client_for(server).messages.stream(model="fusionkit/panel", max_tokens=64, messages=QUESTION)
    with pytest.raises(anthropic.APIStatusError) as raised, stream as events:
        for _ in events:
            pass
    assert "0 of 2 panel members answered" in str(raised.value)
    body = {"model": "fusionkit/panel", "max_tokens": 64, "messages": QUESTION, "stream": True}
    with httpx2.stream("POST", server.url + "/v1/messages", json=body, timeout=30) as response:
        frames = [f for f in sse_frames(response) if f.event != "ping"]
    assert [f.event for f in frames] == ["message_start", "error"]
    assert frames[-1].data == {
        "type": "error",
        "error": {"type": "api_error", "message": frames[-1].data["error"]["message"]},  # type: ignore[index]
    }


def test_a_body_over_the_limit_is_a_413_in_anthropics_shape(tmp_path: Path, live_server: Any) -> None:
    server = router(tmp_path, live_server)
    huge = [{"role": "user", "content": "x" * DEFAULT_MAX_BODY_BYTES}]
    with pytest.raises(anthropic.RequestTooLargeError) as refused:
        client_for(server).messages.create(model="fusionkit/panel", max_tokens=64, messages=huge)
    # Before, the SDK got OpenAI's `{"error": {...}}` here.
    assert refused.value.body == {
        "type": "error",
        "error": {
            "type": "request_too_large",
            "message": f"request body exceeds the limit of {DEFAULT_MAX_BODY_BYTES} bytes",
        },
    }

    def chunked() -> Iterator[bytes]:
        # No Content-Length: refused while the body is being read, in the same shape.
        yield b'{"model": "fusionkit/panel", "messages": [{"role": "user", "content": "'
        for _ in range(DEFAULT_MAX_BODY_BYTES // 65536 + 1):
            yield b"x" * 65536
        yield b'"}]}'

    counted = httpx2.post(server.url + "/v1/messages/count_tokens?beta=true", content=chunked(), timeout=30)
    assert counted.status_code == 413 and counted.json()["error"]["type"] == "request_too_large"
    # The OpenAI doors keep OpenAI's shape.
    openai_door = httpx2.post(
        server.url + "/v1/responses", json={"model": "fusionkit/panel", "input": huge}, timeout=30
    )
    assert openai_door.status_code == 413 and openai_door.json()["error"]["code"] == "request_too_large"
