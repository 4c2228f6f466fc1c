"""The bridge with the offline mock provider: the OpenAI wire rules (CONFORMANCE.md) and bad input."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, Literal

import httpx2
import openai
import pytest
from pydantic import BaseModel, Field

from bench.procs import spawn, wait_healthy
from bridge.app import create_app
from bridge.endpoint import EndpointConfig
from bridge.http import DEFAULT_MAX_BODY_BYTES
from tests.livesrv import free_port

ASK = [{"role": "user", "content": "How do I choose a database?"}]
WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


def mock(endpoint_id: str = "m", model: str = "mock-1", **settings: Any) -> EndpointConfig:
    return EndpointConfig(id=endpoint_id, provider="mock", model=model, mock=settings)


@pytest.fixture
def bridge(live_server: Any) -> Any:
    return live_server(create_app(mock()))


@pytest.fixture
def client(bridge: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=bridge.url + "/v1", api_key="x", max_retries=0)


def test_completion_shape(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="m", messages=ASK)
    assert reply.object == "chat.completion" and reply.id and isinstance(reply.created, int)
    assert reply.model == "m" and reply.choices[0].index == 0 and reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.content.startswith("[offline mock model mock-1]")
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_stream_rules(bridge: Any, client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model="m", messages=ASK).choices[0].message.content
    with httpx2.stream(
        "POST", bridge.url + "/v1/chat/completions", json={"model": "m", "messages": ASK, "stream": True}
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines) and lines[-1] == "data: [DONE]"
    frames = [json.loads(line[6:]) for line in lines[:-1]]
    assert {(f["id"], f["created"], f["model"], f["object"]) for f in frames} == {
        (frames[0]["id"], frames[0]["created"], "m", "chat.completion.chunk")
    }
    assert frames[0]["choices"][0]["delta"]["role"] == "assistant"
    finishes = [f["choices"][0]["finish_reason"] for f in frames]
    assert finishes[:-1] == [None] * (len(frames) - 1) and finishes[-1] == "stop"
    assert "".join(f["choices"][0]["delta"].get("content", "") for f in frames) == whole
    assert all("usage" not in f for f in frames)


def test_include_usage_sends_exactly_one_usage_chunk_last(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model="m", messages=ASK, stream=True, stream_options={"include_usage": True})
    )
    assert [c for c in chunks if c.usage is not None] == [chunks[-1]] and chunks[-1].choices == []
    assert chunks[-1].usage.total_tokens == chunks[-1].usage.prompt_tokens + chunks[-1].usage.completion_tokens


def test_async_client(bridge: Any) -> None:
    async def ask() -> tuple[str, str]:
        client = openai.AsyncOpenAI(base_url=bridge.url + "/v1", api_key="x", max_retries=0)
        whole = (await client.chat.completions.create(model="m", messages=ASK)).choices[0].message.content
        parts = [
            c.choices[0].delta.content or ""
            async for c in await client.chat.completions.create(model="m", messages=ASK, stream=True)
            if c.choices
        ]
        return whole or "", "".join(parts)

    whole, streamed = asyncio.run(ask())
    assert whole == streamed != ""


def test_models_and_health(bridge: Any, client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [(m.id, m.object) for m in models] == [("m", "model")] and "mock" in models[0].owned_by
    listing = httpx2.get(bridge.url + "/v1/models").json()
    assert listing["object"] == "list" and len(listing["data"]) == 1
    assert set(listing["data"][0]) == {"id", "object", "created", "owned_by"}
    assert isinstance(listing["data"][0]["created"], int)
    for path in ("/health", "/v1/health"):
        assert httpx2.get(bridge.url + path).json() == {"status": "ok", "model": "m", "provider": "mock", "mock": True}


def test_tool_calls_in_both_shapes(client: openai.OpenAI) -> None:
    tools = WEATHER_TOOLS
    reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "Paris"}], tools=tools)
    assert reply.choices[0].finish_reason == "tool_calls" and reply.choices[0].message.content is None
    call = reply.choices[0].message.tool_calls[0]
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    chunks = list(
        client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "Paris"}], tools=tools, stream=True
        )
    )
    deltas = [d for c in chunks for d in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id == call.id and deltas[0].function.arguments == ""
    assert all(d.id is None and d.function.name is None for d in deltas[1:])
    assert json.loads("".join(d.function.arguments for d in deltas)) == {"city": "Paris"}
    # An assistant turn with content null plus tool_calls, then the result, is accepted.
    follow = client.chat.completions.create(
        model="m",
        tools=tools,
        messages=[
            {"role": "user", "content": "Paris"},
            reply.choices[0].message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
    )
    assert "sunny" in follow.choices[0].message.content


def test_streamed_tool_call_deltas_on_the_wire(bridge: Any, client: openai.OpenAI) -> None:
    """What the SDK hides: later deltas omit id, type and name (not null), and one frame finishes."""
    ask = [{"role": "user", "content": "Paris"}]
    call = client.chat.completions.create(model="m", messages=ask, tools=WEATHER_TOOLS).choices[0].message.tool_calls[0]
    body = {"model": "m", "messages": ask, "tools": WEATHER_TOOLS, "stream": True}
    with httpx2.stream("POST", bridge.url + "/v1/chat/completions", json=body) as response:
        payloads = [line[6:] for line in response.iter_lines() if line.startswith("data: ")]
    assert payloads[-1] == "[DONE]"
    frames = [json.loads(p) for p in payloads[:-1]]
    deltas = [d for f in frames for d in f["choices"][0]["delta"].get("tool_calls", [])]
    head, rest = deltas[0], deltas[1:]
    assert head == {
        "index": 0,
        "id": call.id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    assert rest and all(set(d) == {"index", "function"} and set(d["function"]) == {"arguments"} for d in rest)
    assert {d["index"] for d in rest} == {0}
    assert "".join(d["function"]["arguments"] for d in rest) == call.function.arguments
    finishes = [f["choices"][0]["finish_reason"] for f in frames]
    assert [f for f in finishes if f is not None] == ["tool_calls"] and finishes[-1] == "tool_calls"


def test_max_tokens_gives_length(client: openai.OpenAI) -> None:
    for limit in ({"max_tokens": 3}, {"max_completion_tokens": 3}):
        reply = client.chat.completions.create(model="m", messages=ASK, **limit)  # type: ignore[arg-type]
        assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 3


def test_mock_is_deterministic_and_models_differ(live_server: Any) -> None:
    a = openai.OpenAI(
        base_url=live_server(create_app(mock("a", "mock-concise"))).url + "/v1", api_key="x", max_retries=0
    )
    b = openai.OpenAI(
        base_url=live_server(create_app(mock("b", "mock-cautious"))).url + "/v1", api_key="x", max_retries=0
    )
    first = a.chat.completions.create(model="a", messages=ASK, temperature=0).choices[0].message.content
    assert a.chat.completions.create(model="a", messages=ASK, temperature=0).choices[0].message.content == first
    assert b.chat.completions.create(model="b", messages=ASK, temperature=0).choices[0].message.content != first


def test_mock_judge_request_gets_analysis_json(client: openai.OpenAI) -> None:
    prompt = (
        '<candidate id="c1" model="x">Use Postgres.</candidate>\n'
        '<candidate id="c2" model="y">Use SQLite for small apps.</candidate>'
    )
    reply = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": prompt}], response_format={"type": "json_object"}
    )
    analysis = json.loads(reply.choices[0].message.content)
    assert set(analysis["ranking"]) == {"c1", "c2"} and analysis["best_candidate_id"] in ("c1", "c2")


def test_mock_failures_are_502s(live_server: Any) -> None:
    client = openai.OpenAI(
        base_url=live_server(create_app(mock(fail_rate=1.0))).url + "/v1", api_key="x", max_retries=0
    )
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="m", messages=ASK)
    assert caught.value.status_code == 502 and caught.value.body["code"] == "upstream_failure"
    assert set(caught.value.body) == {"message", "type", "param", "code"} and "mock" in caught.value.body["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (json.dumps({"model": "m", "messages": ASK, "temperature": "hot"}).encode(), "temperature"),
        (json.dumps({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}).encode(), "messages[0].role"),
        (json.dumps({"model": "m"}).encode(), "messages"),
        (json.dumps({"model": "m", "messages": []}).encode(), "messages"),
        (json.dumps({"model": "m", "messages": [{"role": "tool", "content": "x"}]}).encode(), "messages[0]"),
        (
            json.dumps({"model": "m", "messages": ASK, "stream_options": {"include_usage": True}}).encode(),
            "stream_options",
        ),
        (json.dumps({"model": "m", "messages": ASK, "tool_choice": "auto"}).encode(), "tool_choice"),
        (
            json.dumps(
                {
                    "model": "m",
                    "messages": ASK,
                    "tools": [{"type": "function", "function": {"name": "a"}}],
                    "tool_choice": {"type": "function", "function": {"name": "b"}},
                }
            ).encode(),
            "tool_choice",
        ),
    ],
)
def test_bad_requests_are_400_in_openai_shape(bridge: Any, body: bytes, param: str | None) -> None:
    response = httpx2.post(
        bridge.url + "/v1/chat/completions", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    assert response.headers["x-should-retry"] == "false"


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": "hot"},
        {"messages": [{"role": "wizard", "content": "x"}]},
        {"stream": False, "stream_options": {"include_usage": True}},
        {"tools": WEATHER_TOOLS, "tool_choice": {"type": "function", "function": {"name": "undefined_tool"}}},
    ],
)
def test_bad_requests_raise_bad_request_error_in_the_sdk(client: openai.OpenAI, bad: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"model": "m", "messages": ASK, **bad}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**arguments)
    assert caught.value.status_code == 400 and caught.value.body["type"] == "invalid_request_error"


def test_unknown_model_is_404_and_oversized_body_413(bridge: Any, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-nope", messages=ASK)
    big = json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * DEFAULT_MAX_BODY_BYTES}]})
    response = httpx2.post(
        bridge.url + "/v1/chat/completions", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"

    def chunked() -> Iterator[bytes]:
        # No Content-Length: the limit must hold while the body is being read, too.
        yield b'{"model": "m", "messages": [{"role": "user", "content": "'
        for _ in range(DEFAULT_MAX_BODY_BYTES // 65536 + 1):
            yield b"x" * 65536
        yield b'"}]}'

    response = httpx2.post(
        bridge.url + "/v1/chat/completions", content=chunked(), headers={"content-type": "application/json"}
    )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413 and response.json()["error"]["code"] == "request_too_large"
    assert client.chat.completions.create(model="m", messages=ASK).choices[0].message.content  # still serving


def test_serve_endpoint_as_a_real_process() -> None:
    port = free_port()
    args = ["-m", "fusionkit_cli.main", "serve-endpoint", "--id", "m", "--provider", "mock", "--model", "mock-1"]
    with spawn([*args, "--port", str(port)]) as proc:  # terminated (then killed) on the way out, always
        wait_healthy(f"http://127.0.0.1:{port}", proc)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        whole = client.chat.completions.create(model="m", messages=ASK).choices[0].message.content
        streamed = client.chat.completions.create(model="m", messages=ASK, stream=True)
        assert whole and "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == whole
        assert [m.id for m in client.models.list()] == ["m"]
    assert proc.returncode is not None


def test_serve_endpoint_flag_errors_exit_2() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "fusionkit_cli.main",
            "serve-endpoint",
            "--id",
            "bad id!",
            "--provider",
            "mock",
            "--model",
            "m",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "--id" in result.stderr and "Traceback" not in result.stderr


def test_trace_headers_become_bridge_trace_events(
    live_server: Any, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FUSION_TRACE_DIR", str(tmp_path))
    bridge = live_server(create_app(mock()))
    client = openai.OpenAI(base_url=bridge.url + "/v1", api_key="x", max_retries=0)
    client.chat.completions.create(
        model="m",
        messages=ASK,
        extra_headers={"x-fusion-trace-id": "trace-abc", "x-fusion-span-id": "span-1", "x-fusion-candidate-id": "c2"},
    )
    trace_file = tmp_path / "trace-abc.jsonl"
    deadline = time.monotonic() + 5
    # The writer creates the file before the line is complete; wait for a whole line, not the file.
    while not (trace_file.exists() and trace_file.read_text().endswith("\n")):
        assert time.monotonic() < deadline, "no trace event written"
        time.sleep(0.02)
    event = json.loads(trace_file.read_text().splitlines()[0])
    assert event["schema"] == "fusion-trace-event.v1" and event["component"] == "bridge"
    assert (event["trace_id"], event["parent_span_id"], event["candidate_id"], event["model_id"]) == (
        "trace-abc",
        "span-1",
        "c2",
        "m",
    )


class Ingredient(BaseModel):
    name: str
    grams: int = Field(ge=5)


class Recipe(BaseModel):
    title: str
    difficulty: Literal["easy", "hard"]
    ingredients: list[Ingredient]
    vegetarian: bool
    notes: str | None


def test_structured_output_parses_into_the_clients_model(client: openai.OpenAI) -> None:
    # The SDK's parse() sends a strict json_schema and validates the answer against the pydantic model.
    parsed = client.beta.chat.completions.parse(model="m", messages=ASK, response_format=Recipe)
    recipe = parsed.choices[0].message.parsed
    assert isinstance(recipe, Recipe) and recipe.ingredients and recipe.ingredients[0].grams >= 5


def test_json_object_mode_answers_one_json_object(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="m", messages=ASK, response_format={"type": "json_object"})
    answer = json.loads(reply.choices[0].message.content or "")
    assert isinstance(answer, dict) and answer["answer"].startswith("[offline mock model mock-1]")


def test_a_judge_prompt_written_by_another_client_gets_analysis_json(client: openai.OpenAI) -> None:
    # No <candidate> tags and no response_format: only an instruction to answer with the analysis JSON.
    prompt = (
        "You are a judge. Compare the answers below and reply in JSON with consensus, contradictions, "
        "ranking and best_candidate_id.\n\nCandidate alpha: Use Postgres.\nCandidate beta: Use SQLite.\n"
    )
    reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": prompt}])
    analysis = json.loads(reply.choices[0].message.content or "")
    assert set(analysis["ranking"]) == {"alpha", "beta"} and analysis["best_candidate_id"] in ("alpha", "beta")


def test_spelled_out_arguments_go_only_to_the_tool_they_follow(client: openai.OpenAI) -> None:
    tools = [
        *WEATHER_TOOLS,
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
            },
        },
    ]

    def arguments(content: str, **extra: Any) -> dict[str, Any]:
        reply = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": content}], tools=tools, **extra
        )
        (call,) = reply.choices[0].message.tool_calls or []
        return json.loads(call.function.arguments)

    assert arguments('Call get_time with {"zone": "UTC"}') == {"zone": "UTC"}
    # No tool named: a JSON object in the message is not anybody's arguments.
    assert arguments('Store {"zone": "UTC"}') == {"city": 'Store {"zone": "UTC"}'}
    # Forced onto another tool: the arguments spelled out for get_time are not its.
    forced = {"type": "function", "function": {"name": "get_weather"}}
    assert arguments('Call get_time with {"zone": "UTC"}', tool_choice=forced) == {
        "city": 'Call get_time with {"zone": "UTC"}'
    }
