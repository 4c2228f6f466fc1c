"""The bridge fronting an OpenAI-compatible upstream (the stand-in), driven by the official openai SDK."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest

from bridge.app import create_app
from bridge.endpoint import EndpointConfig
from tests.livesrv import LiveServer, free_port
from tests.standins.openai_standin import create_openai_standin
from tests.standins.recorder import StandinState

HELLO = [{"role": "user", "content": "hello there bridge"}]
TOOLS = [
    {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "fetch", "parameters": {"type": "object", "properties": {}}}},
]

Start = Callable[[Any], LiveServer]


@pytest.fixture(params=["openai-compatible", "openai"])
def setup(request: pytest.FixtureRequest, live_server: Start, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("STANDIN_KEY", "sk-test-secret-123")
    state = StandinState()
    upstream = live_server(create_openai_standin(state))
    endpoint = EndpointConfig(
        id="up", provider=request.param, model="standin-1", base_url=upstream.url + "/v1", api_key_env="STANDIN_KEY"
    )
    bridge = live_server(create_app(endpoint))
    client = openai.OpenAI(base_url=bridge.url + "/v1", api_key="x", max_retries=0)
    return state, bridge, client


def test_text_and_usage(setup: Any) -> None:
    state, _, client = setup
    reply = client.chat.completions.create(model="up", messages=HELLO, temperature=0)
    assert reply.choices[0].message.content == "echo: hello there bridge"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0
    sent = state.requests[-1]
    assert sent["model"] == "standin-1" and sent["temperature"] == 0
    assert state.headers[-1]["authorization"] == "Bearer sk-test-secret-123"


def test_stream_equals_completion_and_usage_chunk_only_when_asked(setup: Any) -> None:
    _, _, client = setup
    whole = client.chat.completions.create(model="up", messages=HELLO).choices[0].message.content
    chunks = list(client.chat.completions.create(model="up", messages=HELLO, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert all(c.usage is None for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    with_usage = list(
        client.chat.completions.create(model="up", messages=HELLO, stream=True, stream_options={"include_usage": True})
    )
    assert [c for c in with_usage if c.usage is not None] == [with_usage[-1]]
    assert with_usage[-1].choices == [] and with_usage[-1].usage.completion_tokens == 4


def test_parallel_tool_calls_streamed_and_not(setup: Any) -> None:
    _, bridge, client = setup
    reply = client.chat.completions.create(model="up", messages=HELLO, tools=TOOLS)
    assert reply.choices[0].finish_reason == "tool_calls" and reply.choices[0].message.content is None
    assert [c.function.name for c in reply.choices[0].message.tool_calls] == ["search", "fetch"]

    body = {"model": "up", "messages": HELLO, "tools": TOOLS, "stream": True}
    with httpx2.stream("POST", bridge.url + "/v1/chat/completions", json=body) as response:
        frames = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    deltas = [d for f in frames for d in f["choices"][0]["delta"].get("tool_calls", [])]
    heads = [d for d in deltas if "id" in d]
    assert [h["index"] for h in heads] == [0, 1]
    assert all(h["type"] == "function" and h["function"]["arguments"] == "" for h in heads)
    rest = [d for d in deltas if "id" not in d]
    assert all(set(d) == {"index", "function"} and set(d["function"]) == {"arguments"} for d in rest)
    for index in (0, 1):
        args = "".join(d["function"].get("arguments", "") for d in deltas if d["index"] == index)
        assert json.loads(args) == {"q": "hello there bridge"}
    assert [f["choices"][0]["finish_reason"] for f in frames if f["choices"][0]["finish_reason"]] == ["tool_calls"]


def test_length_limit_and_content_parts(setup: Any) -> None:
    state, _, client = setup
    parts = [{"role": "user", "content": [{"type": "text", "text": "one two"}, {"type": "text", "text": " three"}]}]
    reply = client.chat.completions.create(model="up", messages=parts, max_completion_tokens=2)
    assert reply.choices[0].finish_reason == "length"
    assert state.requests[-1]["messages"][0]["content"] == parts[0]["content"]


@pytest.mark.parametrize(
    ("status", "error_type", "sdk_error"),
    [
        (400, "invalid_request_error", openai.BadRequestError),
        (401, "authentication_error", openai.AuthenticationError),
        (404, "not_found_error", openai.NotFoundError),
        (429, "rate_limit_error", openai.RateLimitError),
        (500, "upstream_error", openai.InternalServerError),
    ],
)
def test_upstream_errors_keep_their_meaning(setup: Any, status: int, error_type: str, sdk_error: type) -> None:
    state, _, client = setup
    body = {"error": {"message": f"upstream said {status}", "type": "x", "param": None, "code": None}}
    state.fail_next(status, body, headers={"Retry-After": "7"} if status == 429 else None)
    with pytest.raises(sdk_error) as caught:
        client.chat.completions.create(model="up", messages=HELLO)
    error = caught.value
    assert error.body["type"] == error_type and f"upstream said {status}" in error.body["message"]
    assert error.status_code == (502 if status == 500 else status)
    if status == 429:
        assert error.response.headers["retry-after"] == "7"
    assert "sk-test-secret-123" not in error.response.text


def test_trace_headers_reach_the_upstream(setup: Any) -> None:
    state, _, client = setup
    client.chat.completions.create(
        model="up", messages=HELLO, extra_headers={"x-fusion-trace-id": "t-1", "x-fusion-candidate-id": "c2"}
    )
    assert state.headers[-1]["x-fusion-trace-id"] == "t-1"
    assert state.headers[-1]["x-fusion-candidate-id"] == "c2"


def test_requests_run_concurrently(setup: Any) -> None:
    state, bridge, _ = setup
    state.delay_s = 0.2

    async def eight() -> None:
        client = openai.AsyncOpenAI(base_url=bridge.url + "/v1", api_key="x", max_retries=0)
        await asyncio.gather(*(client.chat.completions.create(model="up", messages=HELLO) for _ in range(8)))

    asyncio.run(eight())
    assert state.max_in_flight == 8


@pytest.mark.parametrize("fault", ["error_frame", "truncate"])
def test_a_stream_that_breaks_raises_instead_of_looking_complete(setup: Any, fault: str) -> None:
    state, _, client = setup
    state.stream_fault = fault
    with pytest.raises(openai.APIError):
        list(
            client.chat.completions.create(
                model="up", messages=[{"role": "user", "content": "a b c d e f"}], stream=True
            )
        )


def test_unreachable_upstream_is_a_502(live_server: Start) -> None:
    endpoint = EndpointConfig(
        id="up", provider="openai-compatible", model="m", base_url=f"http://127.0.0.1:{free_port()}/v1"
    )
    bridge = live_server(create_app(endpoint))
    client = openai.OpenAI(base_url=bridge.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="up", messages=HELLO)
    assert caught.value.status_code == 502 and "cannot reach upstream" in caught.value.body["message"]
