"""The bridge fronting Anthropic (the stand-in) through the real anthropic SDK, driven by the openai SDK.

One stand-in and one bridge serve the whole module (the stand-in's state is reset before each
test); tests that need another endpoint configuration start their own bridge.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx2
import openai
import pytest

from bridge.adapters.anthropic_adapter import DEFAULT_MAX_TOKENS
from bridge.app import create_app
from bridge.endpoint import EndpointConfig
from tests.livesrv import LiveServer, free_port
from tests.standins.anthropic_standin import TOOL_CALL_TOKENS, anthropic_error, create_anthropic_standin, words
from tests.standins.recorder import StandinState

KEY = "sk-ant-test-secret-456"
KEY_ENV = "ANTHROPIC_TEST_KEY"
MODEL = "claude-test"


def _tool(name: str, description: str) -> dict[str, Any]:
    schema = {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": schema}}


TOOLS: Any = [_tool("lookup", "Look up a word."), _tool("weather", "Weather for a place.")]
NAMED = {"type": "function", "function": {"name": "weather"}}
Servers = tuple[StandinState, LiveServer, str]


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(KEY_ENV, KEY)
        state = StandinState()
        with LiveServer(create_anthropic_standin(state)) as upstream:
            endpoint = EndpointConfig(
                id="claude", provider="anthropic", model=MODEL, base_url=upstream.url, api_key_env=KEY_ENV
            )
            with LiveServer(create_app(endpoint)) as bridge:
                yield state, upstream, bridge.url


@pytest.fixture
def state(servers: Servers) -> StandinState:
    state = servers[0]
    state.__dict__.update(StandinState().__dict__)  # a fresh state, seen by the running stand-in
    return state


@pytest.fixture
def client(servers: Servers) -> openai.OpenAI:
    return openai.OpenAI(base_url=servers[2] + "/v1", api_key="x", max_retries=0)


def _chat(client: openai.OpenAI, stream: bool, **kwargs: Any) -> tuple[str | None, list[Any], str | None, Any]:
    """(content, tool calls as (id, name, arguments), finish_reason, usage), streamed or not."""
    kwargs.setdefault("model", "claude")
    if not stream:
        choice = (reply := client.chat.completions.create(**kwargs)).choices[0]
        calls = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in choice.message.tool_calls or []]
        return choice.message.content, calls, choice.finish_reason, reply.usage
    chunks = list(client.chat.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    heads: dict[int, list[Any]] = {}
    for c in chunks:
        for d in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            if d.id:
                heads[d.index] = [d.id, d.function.name, ""]
            heads[d.index][2] += d.function.arguments or ""
    calls = [(i, n, json.loads(a)) for _, (i, n, a) in sorted(heads.items())]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1, finishes
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    return text or None, calls, finishes[0], chunks[-1].usage


def _sse(bridge: str, body: dict[str, Any]) -> list[dict[str, Any]]:
    """The bridge's stream as raw JSON frames, to see which fields are present rather than null."""
    response = httpx2.post(bridge + "/v1/chat/completions", json={"model": "claude", "stream": True, **body})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    frames = [line.removeprefix("data: ") for line in response.text.splitlines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    return [json.loads(frame) for frame in frames[:-1]]


@pytest.mark.parametrize("stream", [False, True])
def test_system_prompt_merged_turns_and_usage(client: openai.OpenAI, state: StandinState, stream: bool) -> None:
    content, calls, finish, usage = _chat(
        client,
        stream,
        temperature=0,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "first"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "third question"},
        ],
    )
    assert (content, calls, finish) == ("echo: third question", [], "stop")
    sent = state.requests[-1]
    assert sent["model"] == MODEL and sent["max_tokens"] == DEFAULT_MAX_TOKENS
    assert "temperature" in sent and sent["temperature"] == 0
    assert sent["system"] == "Be brief.\n\nAnswer in English."
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        {"role": "user", "content": [{"type": "text", "text": "third question"}]},
    ]
    prompt = words("Be brief.\n\nAnswer in English. first second ok third question")
    assert (usage.prompt_tokens, usage.completion_tokens) == (prompt, words("echo: third question"))
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


def test_key_version_and_trace_headers_reach_upstream(
    client: openai.OpenAI, state: StandinState, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the SDKs' debug logs included
    state.fail_next(401, anthropic_error(401, "invalid x-api-key"))
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}], stream=True)
    client.chat.completions.create(
        model="claude", messages=[{"role": "user", "content": "hi"}], extra_headers={"x-fusion-trace-id": "trace-9"}
    )
    assert "/v1/messages" in caplog.text and KEY not in caplog.text
    headers = state.headers[-1]
    assert state.paths[-1] == "/v1/messages"
    assert headers["x-api-key"] == KEY
    assert KEY not in headers.get("authorization", "")  # the key is sent once, in the documented header
    assert headers["anthropic-version"]
    assert headers["x-fusion-trace-id"] == "trace-9"


def test_sampling_fields_and_limits(client: openai.OpenAI, state: StandinState) -> None:
    client.chat.completions.create(
        model=MODEL,  # the provider's own name is accepted as well as the endpoint id
        messages=[{"role": "user", "content": "hi"}],
        temperature=1.5,
        top_p=0.5,
        max_tokens=10,
        max_completion_tokens=20,
        stop="END",
        seed=7,
    )
    sent = state.requests[-1]
    # Anthropic's temperature tops out at 1; OpenAI fields Anthropic lacks (seed) are not sent.
    assert (sent["temperature"], sent["top_p"], sent["max_tokens"], sent["stop_sequences"]) == (1.0, 0.5, 20, ["END"])
    assert "seed" not in sent


def test_image_parts_become_image_blocks(client: openai.OpenAI, state: StandinState) -> None:
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    parts: Any = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixel}"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    client.chat.completions.create(model="claude", messages=[{"role": "user", "content": parts}])
    assert state.requests[-1]["messages"][0]["content"] == [
        {"type": "text", "text": "what is this"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": pixel}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]
    bad: Any = [{"type": "image_url", "image_url": {"url": "data:image/png,not-base64"}}]
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": bad}])


def test_stream_is_the_completion_in_pieces(servers: Servers, client: openai.OpenAI, state: StandinState) -> None:
    messages: Any = [{"role": "user", "content": "stream me please"}]
    whole = client.chat.completions.create(model="claude", messages=messages)
    frames = _sse(servers[2], {"messages": messages, "stream_options": {"include_usage": True}})
    with_choices = [f for f in frames if f["choices"]]
    assert with_choices[0]["choices"][0]["delta"]["role"] == "assistant"
    assert len({(f["id"], f["created"], f["model"]) for f in frames}) == 1
    pieces = [f["choices"][0]["delta"].get("content") or "" for f in with_choices]
    assert len([p for p in pieces if p]) > 1  # forwarded token by token, not buffered
    assert "".join(pieces) == whole.choices[0].message.content == "echo: stream me please"
    assert [f["choices"][0]["finish_reason"] for f in with_choices if f["choices"][0]["finish_reason"]] == ["stop"]
    assert with_choices[-1]["choices"][0]["finish_reason"] == "stop"
    # message_start says 1 output token, message_delta the cumulative total: the total is what counts.
    usage = whole.usage
    assert usage is not None and frames[-1]["choices"] == []
    assert frames[-1]["usage"] == {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }
    assert not any("usage" in f for f in _sse(servers[2], {"messages": messages}))


@pytest.mark.parametrize(
    ("tool_choice", "parallel", "sent_choice", "answer", "called"),
    [
        (None, None, None, "Let me check.", ["lookup", "weather"]),
        ("auto", None, {"type": "auto"}, "Let me check.", ["lookup", "weather"]),
        ("required", None, {"type": "any"}, None, ["lookup", "weather"]),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}, None, ["lookup"]),
        (NAMED, None, {"type": "tool", "name": "weather"}, None, ["weather"]),
        ("none", None, {"type": "none"}, "echo: rain in Oslo?", []),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_tools_and_tool_choice(
    client: openai.OpenAI,
    state: StandinState,
    stream: bool,
    tool_choice: Any,
    parallel: bool | None,
    sent_choice: dict[str, Any] | None,
    answer: str | None,
    called: list[str],
) -> None:
    extra: dict[str, Any] = {"tool_choice": tool_choice} if tool_choice is not None else {}
    if parallel is not None:
        extra["parallel_tool_calls"] = parallel
    content, calls, finish, usage = _chat(
        client, stream, messages=[{"role": "user", "content": "rain in Oslo?"}], tools=TOOLS, **extra
    )
    sent = state.requests[-1]
    assert sent["tools"] == [
        {"name": f["name"], "description": f["description"], "input_schema": f["parameters"]}
        for f in (t["function"] for t in TOOLS)
    ]
    assert sent.get("tool_choice") == sent_choice
    assert content == answer
    assert calls == [(f"toolu_{i}_{name}", name, {"q": "rain in Oslo?"}) for i, name in enumerate(called)]
    assert finish == ("tool_calls" if called else "stop")
    assert usage.completion_tokens == words(answer or "") + TOOL_CALL_TOKENS * len(called)


@pytest.mark.parametrize("stream", [False, True])
def test_a_call_without_arguments_still_has_json_arguments(client: openai.OpenAI, stream: bool) -> None:
    now = {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
    _, calls, finish, _ = _chat(
        client, stream, messages=[{"role": "user", "content": "time?"}], tools=[now], tool_choice="required"
    )
    assert (calls, finish) == ([("toolu_0_now", "now", {})], "tool_calls")


def test_streamed_tool_call_deltas_have_the_openai_shape(servers: Servers, state: StandinState) -> None:
    frames = _sse(
        servers[2], {"messages": [{"role": "user", "content": "go"}], "tools": TOOLS, "tool_choice": "required"}
    )
    deltas = [d for f in frames if f["choices"] for d in f["choices"][0]["delta"].get("tool_calls", [])]
    heads = [d for d in deltas if "id" in d]
    assert [h["index"] for h in heads] == [0, 1]
    for index, (head, name) in enumerate(zip(heads, ("lookup", "weather"), strict=True)):
        call_id = f"toolu_{index}_{name}"
        assert head == {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
    pieces = [d for d in deltas if "id" not in d]
    assert pieces and all(set(d) == {"index", "function"} and set(d["function"]) == {"arguments"} for d in pieces)
    for index in (0, 1):
        joined = "".join(d["function"]["arguments"] for d in pieces if d["index"] == index)
        assert json.loads(joined) == {"q": "go"}
    finishes = [f["choices"][0]["finish_reason"] for f in frames if f["choices"] and f["choices"][0]["finish_reason"]]
    assert finishes == ["tool_calls"]


@pytest.mark.parametrize("stream", [False, True])
def test_two_turn_tool_loop_arrives_as_tool_use_and_tool_result(
    client: openai.OpenAI, state: StandinState, stream: bool
) -> None:
    messages: Any = [{"role": "user", "content": "rain in Oslo?"}]
    first = client.chat.completions.create(model="claude", messages=messages, tools=TOOLS, tool_choice="required")
    assistant = first.choices[0].message.model_dump(exclude_none=True)
    assistant["content"] = ""  # some clients send "" beside tool calls; Anthropic refuses an empty text block
    lookup, weather = first.choices[0].message.tool_calls or []
    messages += [
        assistant,
        {"role": "tool", "tool_call_id": lookup.id, "content": "Oslo: a city"},
        {"role": "tool", "tool_call_id": weather.id, "content": [{"type": "text", "text": "rain all day"}]},
    ]
    content, calls, finish, _ = _chat(client, stream, messages=messages, tools=TOOLS)
    assert (content, calls, finish) == ("echo: Oslo: a city rain all day", [], "stop")
    turns = state.requests[-1]["messages"]
    assert turns[1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_0_lookup", "name": "lookup", "input": {"q": "rain in Oslo?"}},
            {"type": "tool_use", "id": "toolu_1_weather", "name": "weather", "input": {"q": "rain in Oslo?"}},
        ],
    }
    assert turns[2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "toolu_0_lookup", "content": "Oslo: a city"},
            {"type": "tool_result", "tool_use_id": "toolu_1_weather", "content": "rain all day"},
        ],
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("refusal", "content_filter"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_stop_reasons_map_to_finish_reasons(
    client: openai.OpenAI, state: StandinState, stop_reason: str, finish: str, stream: bool
) -> None:
    state.finish = stop_reason
    assert _chat(client, stream, messages=[{"role": "user", "content": "hi"}])[2] == finish


@pytest.mark.parametrize("stop_reason", ["tool_use", "end_turn"])
@pytest.mark.parametrize("stream", [False, True])
def test_a_turn_with_tool_calls_finishes_with_tool_calls(
    client: openai.OpenAI, state: StandinState, stop_reason: str, stream: bool
) -> None:
    state.finish = stop_reason
    _, calls, finish, _ = _chat(
        client, stream, messages=[{"role": "user", "content": "x"}], tools=TOOLS, tool_choice="required"
    )
    assert calls and finish == "tool_calls"


@pytest.mark.parametrize("stream", [False, True])
def test_token_limit_and_stop_sequence_end_the_answer(client: openai.OpenAI, state: StandinState, stream: bool) -> None:
    messages = [{"role": "user", "content": "one two three"}]
    assert _chat(client, stream, messages=messages, max_tokens=2)[::2] == ("echo: one ", "length")
    assert state.requests[-1]["max_tokens"] == 2
    assert _chat(client, stream, messages=messages, stop=["three", "two"])[::2] == ("echo: one ", "stop")
    assert state.requests[-1]["stop_sequences"] == ["three", "two"]


ERRORS = [
    (400, 400, openai.BadRequestError),
    (401, 401, openai.AuthenticationError),
    (403, 403, openai.PermissionDeniedError),
    (404, 404, openai.NotFoundError),
    (413, 413, openai.APIStatusError),
    (429, 429, openai.RateLimitError),
    (500, 502, openai.InternalServerError),
    (529, 503, openai.InternalServerError),
]


@pytest.mark.parametrize(("status", "bridge_status", "sdk_error"), ERRORS)
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_errors_map_to_openai_errors(
    client: openai.OpenAI, state: StandinState, status: int, bridge_status: int, sdk_error: type, stream: bool
) -> None:
    # An upstream that echoes the key in its message (some proxies do) must not leak it through us.
    retry = {"retry-after": "7"} if status in (429, 529) else None
    state.fail_next(status, anthropic_error(status, f"anthropic says {status} to {KEY}"), headers=retry)
    with pytest.raises(sdk_error) as caught:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}], stream=stream)
    error: Any = caught.value
    assert error.status_code == bridge_status
    assert set(error.body) == {"message", "type", "param", "code"}
    assert f"anthropic says {status}" in error.body["message"]
    assert KEY not in error.response.text and "[redacted]" in error.body["message"]
    assert error.response.headers.get("retry-after") == ("7" if retry else None)
    retryable = bridge_status == 429 or bridge_status >= 500
    assert (error.response.headers.get("x-should-retry") == "false") == (not retryable)
    assert len(state.requests) == 1  # max_retries=0 all the way: one upstream call per client call


def test_error_event_before_any_content_is_an_http_error(client: openai.OpenAI, state: StandinState) -> None:
    state.stream_fault = "error_first"
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}], stream=True)
    error: Any = caught.value
    assert error.status_code == 503
    assert (error.body["code"], error.body["message"]) == ("upstream_overloaded", "anthropic: Overloaded")


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("error_frame", "Overloaded"), ("truncate", "without a stop reason"), ("reset", "broke in the middle")],
)
def test_a_stream_that_breaks_after_content_raises(
    client: openai.OpenAI, state: StandinState, fault: str, reason: str
) -> None:
    state.stream_fault = fault
    received: list[str] = []
    with pytest.raises(openai.APIError) as caught:  # raised while iterating, after the first token
        for chunk in client.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "a b c"}], stream=True
        ):
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "echo: "  # the first token came through, then the failure, never a quiet end
    assert reason in caught.value.message


def test_upstream_timeout_is_504(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A stand-in of its own: its late answer must not land in the shared stand-in's counters.
    monkeypatch.setenv(KEY_ENV, KEY)
    upstream = live_server(create_anthropic_standin(StandinState(delay_s=1.0)))
    endpoint = EndpointConfig(
        id="claude", provider="anthropic", model=MODEL, base_url=upstream.url, api_key_env=KEY_ENV, timeout_s=0.2
    )
    bridge = live_server(create_app(endpoint))
    client = openai.OpenAI(base_url=bridge.url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 504
    assert caught.value.body["code"] == "upstream_timeout"  # type: ignore[index]


def test_unreachable_upstream_is_502(live_server: Any) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    bridge = live_server(create_app(EndpointConfig(id="claude", provider="anthropic", model=MODEL, base_url=url)))
    client = openai.OpenAI(base_url=bridge.url + "/v1", api_key="x", max_retries=0)
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}], stream=stream)
        assert caught.value.status_code == 502 and "cannot reach Anthropic" in caught.value.message


async def test_requests_run_concurrently_and_stay_apart(servers: Servers, state: StandinState) -> None:
    state.delay_s = 0.5  # each request stays in flight at the stand-in long enough for the others to arrive
    client = openai.AsyncOpenAI(base_url=servers[2] + "/v1", api_key="x", max_retries=0)

    async def ask(i: int) -> str:
        messages: Any = [{"role": "user", "content": f"question {i}"}]
        if i % 2:
            reply = await client.chat.completions.create(model="claude", messages=messages)
            return reply.choices[0].message.content or ""
        chunks = await client.chat.completions.create(model="claude", messages=messages, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])

    answers = await asyncio.gather(*(ask(i) for i in range(6)))
    await client.close()
    assert answers == [f"echo: question {i}" for i in range(6)]
    assert state.max_in_flight == 6


def test_the_standin_refuses_what_anthropic_refuses(servers: Servers, state: StandinState) -> None:
    """The stand-in's checks are what make the translation tests meaningful, so they must fire."""
    url = servers[1].url + "/v1/messages"
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    good: dict[str, Any] = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert httpx2.post(url, json=good, headers=headers).status_code == 200
    assert httpx2.post(url, json=good, headers={"anthropic-version": "2023-06-01"}).status_code == 401
    assert httpx2.post(url, json=good, headers={"x-api-key": "k"}).status_code == 400
    orphan = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]}
    for bad in (
        {**good, "seed": 1},
        {k: v for k, v in good.items() if k != "max_tokens"},
        {**good, "temperature": 1.5},
        {**good, "messages": [{"role": "system", "content": "s"}, *good["messages"]]},
        {**good, "messages": [{"role": "user", "content": [{"type": "text", "text": ""}]}]},
        {**good, "messages": [orphan], "tools": [{"name": "t", "input_schema": {"type": "object"}}]},
    ):
        response = httpx2.post(url, json=bad, headers=headers)
        assert response.status_code == 400, bad
        assert response.json()["error"]["type"] == "invalid_request_error"
