"""The bridge fronting an OpenAI-compatible upstream (the stand-in), driven by the official openai SDK.

Both providers that pass requests through, `openai-compatible` and `openai` (with a base URL), run
every test against one stand-in whose state is reset per test.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx2
import openai
import pytest

from bridge.adapters.openai_adapter import OpenAIAdapter
from bridge.app import create_app
from bridge.endpoint import EndpointConfig
from tests.livesrv import LiveServer, free_port
from tests.standins.openai_standin import create_openai_standin, expected_text
from tests.standins.recorder import StandinState

SECRET = "sk-test-secret-123"
HELLO = [{"role": "user", "content": "hello there bridge"}]
TOOLS = [
    {"type": "function", "function": {"name": "search", "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "fetch", "parameters": {"type": "object", "properties": {}}}},
]
PROVIDERS = ("openai-compatible", "openai")


@dataclass
class Setup:
    state: StandinState
    url: str  # the bridge
    client: openai.OpenAI

    def async_client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=self.url + "/v1", api_key="x", max_retries=0)

    def sse(self, body: dict[str, Any]) -> list[str]:
        """The raw `data:` payloads of a streamed answer, to see what the SDK hides (omitted vs null)."""
        with httpx2.stream("POST", self.url + "/v1/chat/completions", json={**body, "stream": True}) as response:
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
            return [line[6:] for line in response.iter_lines() if line.startswith("data: ")]


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[StandinState, dict[str, str]]]:
    state = StandinState()
    with pytest.MonkeyPatch.context() as env, LiveServer(create_openai_standin(state)) as upstream:
        env.setenv("STANDIN_KEY", SECRET)
        bridges = {
            provider: LiveServer(
                create_app(
                    EndpointConfig(
                        id="up",
                        provider=provider,
                        model="standin-1",
                        base_url=upstream.url + "/v1",
                        api_key_env="STANDIN_KEY",
                    )
                )
            )
            for provider in PROVIDERS
        }
        for bridge in bridges.values():
            bridge.__enter__()
        try:
            yield state, {provider: bridge.url for provider, bridge in bridges.items()}
        finally:
            for bridge in bridges.values():
                bridge.__exit__(None, None, None)


@pytest.fixture(params=PROVIDERS)
def setup(request: pytest.FixtureRequest, servers: tuple[StandinState, dict[str, str]]) -> Setup:
    state, urls = servers
    vars(state).update(vars(StandinState()))  # a fresh stand-in for every test
    url = urls[request.param]
    return Setup(state, url, openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0))


def frames_of(payloads: list[str]) -> list[dict[str, Any]]:
    assert payloads[-1] == "[DONE]"
    return [json.loads(p) for p in payloads[:-1]]


def test_text_usage_and_what_reaches_the_upstream(setup: Setup) -> None:
    reply = setup.client.chat.completions.create(model="up", messages=HELLO, temperature=0, seed=7, stop=["zz"])
    sent = setup.state.requests[-1]
    assert reply.choices[0].message.content == expected_text(sent) == "echo: hello there bridge"
    assert reply.choices[0].finish_reason == "stop" and reply.model == "up"
    assert reply.usage is not None
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0
    assert sent["model"] == "standin-1" and sent["temperature"] == 0
    assert (sent["seed"], sent["stop"]) == (7, ["zz"]) and "stream" not in sent and "stream_options" not in sent
    assert setup.state.headers[-1]["authorization"] == f"Bearer {SECRET}"


def test_unknown_fields_and_content_parts_pass_through(setup: Setup) -> None:
    parts = [{"type": "text", "text": "one two"}, {"type": "text", "text": " three"}]
    reply = setup.client.chat.completions.create(
        model="up",
        messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": parts}],
        extra_body={"reasoning_effort": "low", "logit_bias": {"50256": -100}},
    )
    sent = setup.state.requests[-1]
    assert sent["messages"] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": parts}]
    assert sent["reasoning_effort"] == "low" and sent["logit_bias"] == {"50256": -100}
    assert reply.choices[0].message.content == expected_text(sent) == "echo: one two three"


def test_stream_equals_completion_and_usage_chunk_only_when_asked(setup: Setup) -> None:
    client = setup.client
    whole = client.chat.completions.create(model="up", messages=HELLO).choices[0].message.content
    chunks = list(client.chat.completions.create(model="up", messages=HELLO, stream=True))
    # The upstream is always asked for usage; the client sees it only when it asked too.
    assert setup.state.requests[-1]["stream_options"] == {"include_usage": True}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["stop"]
    with_usage = list(
        client.chat.completions.create(model="up", messages=HELLO, stream=True, stream_options={"include_usage": True})
    )
    last = with_usage[-1]
    assert [c for c in with_usage if c.usage is not None] == [last] and last.choices == []
    assert last.usage is not None and last.usage.completion_tokens == len((whole or "").split(" "))
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens


def test_async_client_stream_and_not(setup: Setup) -> None:
    async def ask() -> tuple[str, str]:
        client = setup.async_client()
        whole = await client.chat.completions.create(model="up", messages=HELLO)
        stream = await client.chat.completions.create(model="up", messages=HELLO, stream=True)
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        await client.close()
        return whole.choices[0].message.content or "", "".join(parts)

    whole, streamed = asyncio.run(ask())
    assert whole == streamed == expected_text({"messages": HELLO})


def check_tool_deltas(frames: list[dict[str, Any]], expected_ids: list[str]) -> None:
    """CONFORMANCE 8 on raw frames: a head per call, then argument pieces with nothing else in them."""
    deltas = [d for f in frames for d in f["choices"][0]["delta"].get("tool_calls", [])]
    heads = [d for d in deltas if "id" in d]
    assert [(h["index"], h["id"]) for h in heads] == list(enumerate(expected_ids))
    assert all(h["type"] == "function" and h["function"]["name"] and h["function"]["arguments"] == "" for h in heads)
    rest = [d for d in deltas if "id" not in d]
    assert rest and all(set(d) == {"index", "function"} and set(d["function"]) == {"arguments"} for d in rest)
    for index in range(len(expected_ids)):
        args = "".join(d["function"]["arguments"] for d in deltas if d["index"] == index)
        assert json.loads(args) == {"q": "hello there bridge"}
    assert [f["choices"][0]["finish_reason"] for f in frames if f["choices"][0]["finish_reason"]] == ["tool_calls"]


@pytest.mark.parametrize("quirk", [None, "compact_tool_calls"])
def test_parallel_tool_calls_streamed_and_not(setup: Setup, quirk: str | None) -> None:
    """Also when the upstream sends each call whole, without an index (as some local servers do)."""
    setup.state.stream_fault = quirk
    reply = setup.client.chat.completions.create(model="up", messages=HELLO, tools=TOOLS)
    message = reply.choices[0].message
    assert reply.choices[0].finish_reason == "tool_calls" and message.content is None and message.tool_calls
    calls = [(c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls]
    assert [name for _, name, _ in calls] == ["search", "fetch"] and len({i for i, _, _ in calls}) == 2

    check_tool_deltas(
        frames_of(setup.sse({"model": "up", "messages": HELLO, "tools": TOOLS})), [i for i, _, _ in calls]
    )

    # The SDK's view of the same stream reassembles into the same calls.
    streamed: dict[int, list[str]] = {}
    for chunk in setup.client.chat.completions.create(model="up", messages=HELLO, tools=TOOLS, stream=True):
        for delta in (chunk.choices[0].delta.tool_calls or []) if chunk.choices else []:
            entry = streamed.setdefault(delta.index, ["", "", ""])
            entry[0] += delta.id or ""
            entry[1] += (delta.function.name or "") if delta.function else ""
            entry[2] += (delta.function.arguments or "") if delta.function else ""
    assert [(i, n, json.loads(a)) for _, (i, n, a) in sorted(streamed.items())] == calls


@pytest.mark.parametrize(
    ("upstream_says", "with_tools", "client_sees"),
    [
        ("content_filter", False, "content_filter"),
        ("eos_token", False, "stop"),
        ("stop", True, "tool_calls"),
        ("function_call", True, "tool_calls"),
    ],
)
def test_finish_reasons_are_mapped(setup: Setup, upstream_says: str, with_tools: bool, client_sees: str) -> None:
    setup.state.finish = upstream_says
    extra: dict[str, Any] = {"tools": TOOLS} if with_tools else {}
    reply = setup.client.chat.completions.create(model="up", messages=HELLO, **extra)
    assert reply.choices[0].finish_reason == client_sees
    chunks = list(setup.client.chat.completions.create(model="up", messages=HELLO, stream=True, **extra))
    assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == [client_sees]


def test_an_unknown_finish_reason_is_a_failure_not_an_answer(setup: Setup) -> None:
    setup.state.finish = "abort"
    with pytest.raises(openai.InternalServerError) as caught:
        setup.client.chat.completions.create(model="up", messages=HELLO)
    assert caught.value.status_code == 502 and "abort" in caught.value.message
    with pytest.raises(openai.APIError, match="abort"):
        list(setup.client.chat.completions.create(model="up", messages=HELLO, stream=True))


def test_token_limits_give_length(setup: Setup) -> None:
    whole = expected_text({"messages": HELLO}).split()
    for limit in ({"max_tokens": 2}, {"max_completion_tokens": 2}):
        reply = setup.client.chat.completions.create(model="up", messages=HELLO, **limit)
        text = reply.choices[0].message.content or ""
        assert reply.choices[0].finish_reason == "length" and text.split() == whole[:2]
        assert {key: setup.state.requests[-1][key] for key in limit} == limit
        chunks = list(setup.client.chat.completions.create(model="up", messages=HELLO, stream=True, **limit))
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
        assert [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason] == ["length"]


@pytest.mark.parametrize(
    ("status", "status_seen", "error_type", "sdk_error"),
    [
        (400, 400, "invalid_request_error", openai.BadRequestError),
        (401, 401, "authentication_error", openai.AuthenticationError),
        (403, 403, "permission_error", openai.PermissionDeniedError),
        (404, 404, "not_found_error", openai.NotFoundError),
        (408, 504, "timeout_error", openai.InternalServerError),
        (402, 402, "invalid_request_error", openai.APIStatusError),  # billing: not retryable, not a 502
        (409, 409, "invalid_request_error", openai.ConflictError),
        (422, 422, "invalid_request_error", openai.UnprocessableEntityError),
        (429, 429, "rate_limit_error", openai.RateLimitError),
        (500, 502, "upstream_error", openai.InternalServerError),
        (503, 502, "upstream_error", openai.InternalServerError),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_upstream_errors_keep_their_meaning(
    setup: Setup, status: int, status_seen: int, error_type: str, sdk_error: type[openai.APIStatusError], stream: bool
) -> None:
    body = {
        "error": {"message": f"upstream said {status}", "type": "x", "param": "messages", "code": "c_" + str(status)}
    }
    setup.state.fail_next(status, body, headers={"Retry-After": "7"} if status == 429 else None)
    with pytest.raises(sdk_error) as caught:
        # A failure before the first token is a plain HTTP error, streamed request or not.
        setup.client.chat.completions.create(model="up", messages=HELLO, stream=stream)
    error = caught.value
    assert error.status_code == status_seen
    assert isinstance(error.body, dict) and error.body["type"] == error_type
    assert f"upstream said {status}" in error.body["message"]
    if status == 400:  # the client's own mistake, as the upstream named it
        assert (error.body["param"], error.body["code"]) == ("messages", "c_400")
    assert error.response.headers.get("retry-after") == ("7" if status == 429 else None)


def test_rate_limit_on_the_raw_response(setup: Setup) -> None:
    for stream in (False, True):
        body = {"error": {"message": "slow down", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
        setup.state.fail_next(429, body, headers={"Retry-After": "7"})
        response = httpx2.post(
            setup.url + "/v1/chat/completions", json={"model": "up", "messages": HELLO, "stream": stream}
        )
        assert response.status_code == 429 and response.headers["retry-after"] == "7"
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["type"] == "rate_limit_error"
        assert "x-should-retry" not in response.headers  # retryable, and the SDK may say so itself


def test_the_key_never_appears_in_an_error_or_a_log(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # the SDKs log their requests at DEBUG
    body = {"error": {"message": f"Incorrect API key provided: {SECRET}", "type": "invalid_request_error"}}
    setup.state.fail_next(401, body)
    with pytest.raises(openai.AuthenticationError) as caught:
        setup.client.chat.completions.create(model="up", messages=HELLO)
    assert SECRET not in caught.value.response.text and "Incorrect API key provided" in caught.value.message
    list(setup.client.chat.completions.create(model="up", messages=HELLO, stream=True))
    assert setup.state.headers[-1]["authorization"] == f"Bearer {SECRET}"  # it was used ...
    assert "openai._base_client" in caplog.text and SECRET not in caplog.text  # ... and never written down


def test_trace_headers_reach_the_upstream(setup: Setup) -> None:
    trace = {
        "x-fusion-trace-id": "t-1",
        "x-fusion-span-id": "s-1",
        "x-fusion-parent-span-id": "p-1",
        "x-fusion-candidate-id": "c2",
    }
    setup.client.chat.completions.create(model="up", messages=HELLO, extra_headers=trace)
    list(setup.client.chat.completions.create(model="up", messages=HELLO, stream=True, extra_headers=trace))
    for headers in setup.state.headers[-2:]:
        assert {name: headers.get(name) for name in trace} == trace


def test_requests_run_concurrently(setup: Setup) -> None:
    setup.state.delay_s = 0.5  # each request stays in flight at the stand-in long enough for the others to arrive

    async def eight() -> list[str]:
        client = setup.async_client()
        replies = await asyncio.gather(*(client.chat.completions.create(model="up", messages=HELLO) for _ in range(8)))
        await client.close()
        return [r.choices[0].message.content or "" for r in replies]

    assert asyncio.run(eight()) == [expected_text({"messages": HELLO})] * 8
    assert setup.state.max_in_flight == 8


@pytest.mark.parametrize("fault", ["error_frame", "truncate", "reset"])
def test_a_stream_that_breaks_raises_instead_of_looking_complete(setup: Setup, fault: str) -> None:
    setup.state.stream_fault = fault
    ask = [{"role": "user", "content": "a b c d e f"}]
    with pytest.raises(openai.APIError):
        list(setup.client.chat.completions.create(model="up", messages=ask, stream=True))
    payloads = setup.sse({"model": "up", "messages": ask})
    # Two tokens arrived, then an error frame in the OpenAI shape; no finish, no [DONE].
    assert "[DONE]" not in payloads
    frames = [json.loads(p) for p in payloads]
    assert "".join(f["choices"][0]["delta"].get("content", "") for f in frames[:-1]) == "echo: a "
    assert all(f["choices"][0]["finish_reason"] is None for f in frames[:-1])
    assert set(frames[-1]) == {"error"} and frames[-1]["error"]["type"] == "upstream_error"


def test_malformed_upstream_answers_are_502s(setup: Setup) -> None:
    setup.state.stream_fault = "malformed_json"
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as caught:
            setup.client.chat.completions.create(model="up", messages=HELLO, stream=stream)
        assert caught.value.status_code == 502 and "malformed" in caught.value.message


def test_unreachable_upstream_is_a_502_that_names_it_without_credentials(live_server: Any) -> None:
    port = free_port()
    endpoint = EndpointConfig(
        id="up", provider="openai-compatible", model="m", base_url=f"http://user:pw-secret@127.0.0.1:{port}/v1"
    )
    client = openai.OpenAI(base_url=live_server(create_app(endpoint)).url + "/v1", api_key="x", max_retries=0)
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="up", messages=HELLO, stream=stream)
        message = caught.value.message
        assert caught.value.status_code == 502 and f"cannot reach upstream at http://127.0.0.1:{port}/v1" in message
        assert "pw-secret" not in caught.value.response.text


def test_openai_without_base_url_uses_the_sdk_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    adapter = OpenAIAdapter(EndpointConfig(id="o", provider="openai", model="gpt-4o-mini"))
    assert adapter.base_url == "https://api.openai.com/v1"
    asyncio.run(adapter.aclose())


def test_a_stream_chunk_with_odd_logprobs_keeps_its_text() -> None:
    # Some servers send `logprobs: []` or a string; as for a whole answer, they are dropped, not a 502.
    from bridge.adapters.openai_adapter import _ChunkShaper

    for odd in ([], "n/a", 0):
        chunk = {"choices": [{"index": 0, "delta": {"content": "hi"}, "logprobs": odd}]}
        (out,) = _ChunkShaper().translate(chunk)
        assert out.choices[0].delta.content == "hi" and out.choices[0].logprobs is None
