"""The bridge fronting Gemini (the stand-in) through the real google-genai SDK, driven by the openai SDK.

One stand-in and one bridge serve the whole module (each test starts from fresh stand-in state);
tests that need their own endpoint settings (timeouts, unreachable upstreams) start their own.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest

from bridge.app import create_app
from bridge.endpoint import EndpointConfig
from tests.livesrv import LiveServer, free_port
from tests.standins.gemini_standin import USAGE, GeminiScript, create_gemini_standin, get_field, google_error
from tests.standins.recorder import StandinState

KEY = "AIza-test-secret-789"
KEY_ENV = "GEMINI_TEST_KEY"
SIGNATURE = "c2lnbmVkIGJ5IGdlbWluaQ=="
SCHEMA = {"type": "object", "properties": {"q": {"type": "string"}}}
TOOLS = [
    {"type": "function", "function": {"name": "lookup", "description": "Look up a word.", "parameters": SCHEMA}},
    {"type": "function", "function": {"name": "weather", "description": "Weather in a city.", "parameters": SCHEMA}},
]
FINISH_REASONS = [
    ("STOP", "stop"),
    ("MAX_TOKENS", "length"),
    ("SAFETY", "content_filter"),
    ("RECITATION", "content_filter"),
    ("BLOCKLIST", "content_filter"),
    ("PROHIBITED_CONTENT", "content_filter"),
    ("SPII", "content_filter"),
    ("IMAGE_SAFETY", "content_filter"),
    ("OTHER", "stop"),
]


@dataclass
class Rig:
    state: StandinState
    script: GeminiScript
    bridge_url: str
    client: openai.OpenAI


@dataclass
class Answer:
    content: str | None
    calls: list[tuple[str, str, str]]  # (id, name, arguments)
    finish: str | None
    usage: Any
    chunks: list[Any] = field(default_factory=list)


def _gemini_endpoint(base_url: str, **settings: Any) -> EndpointConfig:
    return EndpointConfig(
        id="gemini", provider="google", model="gemini-test", base_url=base_url, api_key_env=KEY_ENV, **settings
    )


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)


@pytest.fixture(scope="module")
def servers() -> Iterator[Rig]:
    state, script = StandinState(), GeminiScript()
    with pytest.MonkeyPatch.context() as env, LiveServer(create_gemini_standin(state, script)) as upstream:
        env.setenv(KEY_ENV, KEY)
        with LiveServer(create_app(_gemini_endpoint(upstream.url))) as bridge:
            yield Rig(state, script, bridge.url, _client(bridge.url))


@pytest.fixture
def rig(servers: Rig) -> Rig:
    vars(servers.state).update(vars(StandinState()))
    vars(servers.script).update(vars(GeminiScript()))
    return servers


def ask(client: openai.OpenAI, *, stream: bool, **kwargs: Any) -> Answer:
    """One request; a stream is checked against the OpenAI stream rules and reassembled."""
    if not stream:
        reply = client.chat.completions.create(model="gemini", **kwargs)
        choice = reply.choices[0]
        calls = [(c.id, c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
        return Answer(choice.message.content, calls, choice.finish_reason, reply.usage)
    chunks = list(
        client.chat.completions.create(model="gemini", stream=True, stream_options={"include_usage": True}, **kwargs)
    )
    *answer, last = chunks
    assert last.choices == [] and last.usage is not None
    assert all(c.usage is None and len(c.choices) == 1 for c in answer)
    assert answer[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in answer if c.choices[0].finish_reason]
    assert len(finishes) == 1 and answer[-1].choices[0].finish_reason == finishes[0]
    heads: dict[int, tuple[str, str]] = {}  # index -> (id, name)
    arguments: dict[int, str] = {}
    for delta in (d for c in answer for d in c.choices[0].delta.tool_calls or []):
        assert delta.function is not None
        if delta.id is not None:  # a call's first delta: id, type, name and empty arguments
            assert delta.index not in heads and delta.type == "function" and delta.function.arguments == ""
            heads[delta.index], arguments[delta.index] = (delta.id, delta.function.name or ""), ""
        else:  # later deltas: only the index and a piece of the arguments
            assert delta.type is None and delta.function.name is None and delta.index in heads
            arguments[delta.index] += delta.function.arguments or ""
    assert sorted(heads) == list(range(len(heads)))
    streamed = [(*heads[i], arguments[i]) for i in sorted(heads)]
    content = "".join(c.choices[0].delta.content or "" for c in answer)
    return Answer(content, streamed, finishes[0], last.usage, chunks)


def test_text_system_instruction_roles_and_generation_config(rig: Rig) -> None:
    for stream in (False, True):
        answer = ask(
            rig.client,
            stream=stream,
            temperature=0,
            top_p=0.5,
            max_tokens=50,
            stop=["END"],
            seed=7,
            messages=[
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": "Answer in English."},
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"},
                {"role": "user", "content": [{"type": "text", "text": "how are "}]},
                {"role": "user", "content": "you"},
            ],
        )
        assert answer.content == "echo: how are you" and answer.finish == "stop"
        usage = (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens)
        assert usage == (USAGE["promptTokenCount"], USAGE["candidatesTokenCount"], USAGE["totalTokenCount"])
        sent = rig.state.requests[-1]
        assert sent["systemInstruction"]["parts"] == [{"text": "Be brief.\n\nAnswer in English."}]
        assert sent["contents"] == [
            {"role": "user", "parts": [{"text": "hi"}]},
            {"role": "model", "parts": [{"text": "hello"}]},
            {"role": "user", "parts": [{"text": "how are "}, {"text": "you"}]},  # same-role neighbours merged
        ]
        assert sent["generationConfig"] == {
            "temperature": 0,  # 0 stays 0
            "topP": 0.5,
            "maxOutputTokens": 50,
            "stopSequences": ["END"],
            "seed": 7,
        }
        assert rig.state.headers[-1]["x-goog-api-key"] == KEY
    assert rig.state.paths == [
        "/v1beta/models/gemini-test:generateContent",
        "/v1beta/models/gemini-test:streamGenerateContent?alt=sse",
    ]


def test_images_become_inline_data_or_file_data(rig: Rig) -> None:
    content = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "gs://bucket/cat.jpg"}},
    ]
    rig.client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": content}])
    text, inline, file = rig.state.requests[-1]["contents"][0]["parts"]
    assert text == {"text": "what is this"}
    inline_data, file_data = get_field(inline, "inlineData"), get_field(file, "fileData")
    assert (get_field(inline_data, "mimeType"), inline_data["data"]) == ("image/png", "iVBORw0KGgo=")
    assert get_field(file_data, "fileUri") == "gs://bucket/cat.jpg"


def test_stream_joins_to_the_completion_and_sends_usage_only_when_asked(rig: Rig) -> None:
    messages = [{"role": "user", "content": "stream me these words please"}]
    whole = ask(rig.client, stream=False, messages=messages)
    streamed = ask(rig.client, stream=True, messages=messages)
    assert streamed.content == whole.content and len(streamed.chunks) > 4  # forwarded word by word
    assert streamed.usage.total_tokens == whole.usage.total_tokens == USAGE["totalTokenCount"]
    plain = list(rig.client.chat.completions.create(model="gemini", messages=messages, stream=True))
    assert all(c.usage is None and c.choices for c in plain)


@pytest.mark.parametrize("stream", [False, True])
def test_hitting_the_token_limit_gives_length(rig: Rig, stream: bool) -> None:
    messages = [{"role": "user", "content": "a long answer please"}]
    answer = ask(rig.client, stream=stream, messages=messages, max_tokens=50, max_completion_tokens=2)
    assert (answer.content, answer.finish) == ("echo: a", "length")
    assert rig.state.requests[-1]["generationConfig"]["maxOutputTokens"] == 2  # max_completion_tokens wins


@pytest.mark.parametrize(
    ("tool_choice", "calling", "calls"),
    [
        (None, None, ["lookup"]),
        ("auto", {"mode": "AUTO"}, ["lookup"]),
        ("required", {"mode": "ANY"}, ["lookup"]),
        ("none", {"mode": "NONE"}, []),
        (
            {"type": "function", "function": {"name": "weather"}},
            {"mode": "ANY", "allowedFunctionNames": ["weather"]},
            ["weather"],
        ),
    ],
)
def test_tools_and_tool_choice(rig: Rig, tool_choice: Any, calling: dict[str, Any] | None, calls: list[str]) -> None:
    choice = {} if tool_choice is None else {"tool_choice": tool_choice}
    answer = ask(rig.client, stream=False, messages=[{"role": "user", "content": "go"}], tools=TOOLS, **choice)
    assert [name for _, name, _ in answer.calls] == calls
    assert answer.finish == ("tool_calls" if calls else "stop")
    assert answer.content == (None if calls else "echo: go")
    sent = rig.state.requests[-1]
    (tool,) = sent["tools"]
    declarations = [
        {key: get_field(d, key) for key in ("name", "description", "parametersJsonSchema")}
        for d in get_field(tool, "functionDeclarations")
    ]
    assert declarations == [
        {"name": t["function"]["name"], "description": t["function"]["description"], "parametersJsonSchema": SCHEMA}
        for t in TOOLS
    ]
    assert sent.get("toolConfig", {}).get("functionCallingConfig") == calling


@pytest.mark.parametrize("split_finish", [True, False])
@pytest.mark.parametrize("stream", [False, True])
def test_parallel_tool_calls_end_with_tool_calls(rig: Rig, stream: bool, split_finish: bool) -> None:
    rig.script.split_finish = split_finish  # Gemini may send the finishReason after the call, in its own chunk
    answer = ask(rig.client, stream=stream, messages=[{"role": "user", "content": "parallel please"}], tools=TOOLS)
    assert answer.finish == "tool_calls"  # Gemini said STOP
    assert [name for _, name, _ in answer.calls] == ["lookup", "weather"]
    assert [json.loads(arguments) for _, _, arguments in answer.calls] == [{"q": "parallel please"}] * 2
    ids = [call_id for call_id, _, _ in answer.calls]
    assert len(set(ids)) == 2 and all(i.startswith("call_") for i in ids)


@pytest.mark.parametrize("stream", [False, True])
def test_tool_results_become_function_responses(rig: Rig, stream: bool) -> None:
    rig.script.thought_signature = SIGNATURE
    messages: list[dict[str, Any]] = [{"role": "user", "content": "parallel definitions"}]
    first = ask(rig.client, stream=stream, messages=messages, tools=TOOLS)
    (lookup_id, _, lookup_args), (weather_id, _, weather_args) = first.calls
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": lookup_id, "type": "function", "function": {"name": "lookup", "arguments": lookup_args}},
                {"id": weather_id, "type": "function", "function": {"name": "weather", "arguments": weather_args}},
                # A call this bridge never made (another panel member's): no signature to send back.
                {"id": "call_elsewhere", "type": "function", "function": {"name": "lookup", "arguments": "{}"}},
            ],
        },
        {"role": "tool", "tool_call_id": weather_id, "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_elsewhere", "content": "[1, 2]"},
        {"role": "tool", "tool_call_id": lookup_id, "content": '{"definition": "combining"}'},
    ]
    final = ask(rig.client, stream=stream, messages=messages, tools=TOOLS)
    assert (final.content, final.finish) == ("echo: ", "stop")
    contents = rig.state.requests[-1]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"] == [
        # Gemini 3 wants each call's thoughtSignature back; the bridge remembered it by call id.
        {"functionCall": {"name": "lookup", "args": {"q": "parallel definitions"}}, "thoughtSignature": SIGNATURE},
        {"functionCall": {"name": "weather", "args": {"q": "parallel definitions"}}, "thoughtSignature": SIGNATURE},
        {"functionCall": {"name": "lookup", "args": {}}},
    ]
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "weather", "response": {"result": "sunny"}}},
        {"functionResponse": {"name": "lookup", "response": {"result": "[1, 2]"}}},  # JSON, but not an object
        {"functionResponse": {"name": "lookup", "response": {"definition": "combining"}}},
    ]


@pytest.mark.parametrize(("reason", "finish"), FINISH_REASONS)
@pytest.mark.parametrize("stream", [False, True])
def test_finish_reasons(rig: Rig, reason: str, finish: str, stream: bool) -> None:
    rig.state.finish = reason
    answer = ask(rig.client, stream=stream, messages=[{"role": "user", "content": "say something"}])
    assert answer.finish == finish and answer.content == "echo: say something"


@pytest.mark.parametrize("stream", [False, True])
def test_a_blocked_prompt_is_content_filter(rig: Rig, stream: bool) -> None:
    rig.script.block_reason = "SAFETY"
    answer = ask(rig.client, stream=stream, messages=[{"role": "user", "content": "something bad"}])
    assert (answer.content, answer.finish) == ("", "content_filter")
    assert answer.usage.prompt_tokens == USAGE["promptTokenCount"] and answer.usage.completion_tokens == 0


def test_response_format_asks_for_json(rig: Rig) -> None:
    messages = [{"role": "user", "content": "json"}]
    rig.client.chat.completions.create(model="gemini", messages=messages, response_format={"type": "json_object"})
    assert rig.state.requests[-1]["generationConfig"] == {"responseMimeType": "application/json"}
    json_schema = {"name": "answer", "schema": SCHEMA}
    rig.client.chat.completions.create(
        model="gemini", messages=messages, response_format={"type": "json_schema", "json_schema": json_schema}
    )
    config = rig.state.requests[-1]["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": SCHEMA}


@pytest.mark.parametrize(
    ("status", "bridge_status", "sdk_error", "code"),
    [
        (400, 400, openai.BadRequestError, "upstream_bad_request"),
        (401, 401, openai.AuthenticationError, "upstream_authentication_error"),
        (403, 403, openai.PermissionDeniedError, "upstream_permission_error"),
        (404, 404, openai.NotFoundError, "model_not_found"),
        (429, 429, openai.RateLimitError, "rate_limit_exceeded"),
        (500, 502, openai.InternalServerError, "upstream_failure"),
        (503, 502, openai.InternalServerError, "upstream_failure"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_errors_map_to_openai_statuses(
    rig: Rig, stream: bool, status: int, bridge_status: int, sdk_error: type[openai.APIStatusError], code: str
) -> None:
    retry_after = {"Retry-After": "7"} if status == 429 else None
    rig.state.fail_next(status, google_error(status, f"gemini says {status}"), headers=retry_after)
    with pytest.raises(sdk_error) as caught:
        ask(rig.client, stream=stream, messages=[{"role": "user", "content": "hi"}])
    error = caught.value
    assert error.status_code == bridge_status
    assert set(error.body) == {"message", "type", "param", "code"} and error.body["code"] == code
    assert f"gemini says {status}" in error.body["message"]
    assert error.response.headers.get("retry-after") == ("7" if status == 429 else None)
    assert KEY not in error.response.text
    assert rig.state.headers[-1]["x-goog-api-key"] == KEY


def test_a_rejected_key_is_an_auth_error_and_is_never_echoed(rig: Rig) -> None:
    # Google answers a bad key with 400 INVALID_ARGUMENT, reason API_KEY_INVALID; a proxy may echo the key.
    rig.state.fail_next(400, google_error(400, f"API key not valid: {KEY}", reason="API_KEY_INVALID"))
    with pytest.raises(openai.AuthenticationError) as caught:
        ask(rig.client, stream=False, messages=[{"role": "user", "content": "hi"}])
    assert "API key not valid" in caught.value.body["message"]
    assert KEY not in caught.value.response.text


@pytest.mark.parametrize("fault", ["error_frame", "truncate"])
def test_a_stream_that_breaks_midway_raises(rig: Rig, fault: str) -> None:
    rig.state.stream_fault = fault
    received: list[str] = []
    with pytest.raises(openai.APIError):
        stream = rig.client.chat.completions.create(
            model="gemini", messages=[{"role": "user", "content": "a few words here"}], stream=True
        )
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "echo: "  # the first chunk got through, then the failure, never a quiet end


@pytest.mark.parametrize("stream", [False, True])
def test_a_malformed_answer_is_an_upstream_failure(rig: Rig, stream: bool) -> None:
    rig.script.raw_body = "this is not json"
    with pytest.raises(openai.InternalServerError) as caught:
        ask(rig.client, stream=stream, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 502 and caught.value.body["code"] == "upstream_failure"


def test_trace_headers_travel_with_the_key(rig: Rig) -> None:
    rig.client.chat.completions.create(
        model="gemini",
        messages=[{"role": "user", "content": "hi"}],
        extra_headers={"x-fusion-trace-id": "trace-1", "x-fusion-candidate-id": "cand-2"},
    )
    headers = rig.state.headers[-1]
    assert (headers["x-fusion-trace-id"], headers["x-fusion-candidate-id"]) == ("trace-1", "cand-2")
    assert headers["x-goog-api-key"] == KEY


async def test_requests_run_concurrently_through_one_client(rig: Rig) -> None:
    rig.state.delay_s = 0.5
    async with openai.AsyncOpenAI(base_url=rig.bridge_url + "/v1", api_key="x", max_retries=0) as client:
        replies = await asyncio.gather(
            *(
                client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": f"n{i}"}])
                for i in range(6)
            )
        )
    assert [r.choices[0].message.content for r in replies] == [f"echo: n{i}" for i in range(6)]
    assert rig.state.max_in_flight == 6


@pytest.fixture
def gemini_bridge(
    live_server: Callable[[Any], LiveServer], monkeypatch: pytest.MonkeyPatch
) -> Callable[..., openai.OpenAI]:
    """A bridge of its own, for endpoint settings the shared one does not have."""
    monkeypatch.setenv(KEY_ENV, KEY)

    def start(base_url: str, **settings: Any) -> openai.OpenAI:
        return _client(live_server(create_app(_gemini_endpoint(base_url, **settings))).url)

    return start


def test_a_slow_upstream_times_out_with_504(
    live_server: Callable[[Any], LiveServer], gemini_bridge: Callable[..., openai.OpenAI]
) -> None:
    state = StandinState(delay_s=1.0)
    client = gemini_bridge(live_server(create_gemini_standin(state)).url, timeout_s=0.2)
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as caught:
            ask(client, stream=stream, messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 504 and caught.value.body["code"] == "upstream_timeout"


class _Slammer:
    """A TCP listener that accepts each connection and closes it at once, counting them."""

    def __init__(self) -> None:
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.05)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        self.accepted = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


def test_an_unreachable_upstream_is_a_502_without_sdk_retries(gemini_bridge: Callable[..., openai.OpenAI]) -> None:
    slammer = _Slammer()
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            ask(gemini_bridge(slammer.url), stream=False, messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 502 and caught.value.body["code"] == "upstream_failure"
        assert slammer.accepted == 1  # the SDK's own retry is off: the router owns retries
    finally:
        slammer.close()
    with pytest.raises(openai.InternalServerError) as refused:
        ask(gemini_bridge(f"http://127.0.0.1:{free_port()}"), stream=True, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code == 502


def test_the_key_never_reaches_the_logs(rig: Rig, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for stream in (False, True):
        rig.state.fail_next(403, google_error(403, "not allowed"))
        with pytest.raises(openai.PermissionDeniedError):
            ask(rig.client, stream=stream, messages=[{"role": "user", "content": "hi"}])
        ask(rig.client, stream=stream, messages=[{"role": "user", "content": "hi"}], tools=TOOLS)
    assert "POST /v1/chat/completions" in caplog.text and KEY not in caplog.text
