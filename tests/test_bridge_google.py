"""The bridge fronting Gemini (the stand-in) through the real google-genai SDK, driven by the openai SDK."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from bridge.app import create_app
from bridge.endpoint import EndpointConfig
from tests.standins.gemini_standin import create_gemini_standin, google_error
from tests.standins.recorder import StandinState

KEY = "AIza-test-secret-789"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "lookup",
            "description": "Look up a word.",
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
        },
    }
]


@pytest.fixture
def setup(live_server: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[StandinState, openai.OpenAI]:
    monkeypatch.setenv("GEMINI_TEST_KEY", KEY)
    state = StandinState()
    upstream = live_server(create_gemini_standin(state))
    endpoint = EndpointConfig(
        id="gemini", provider="google", model="gemini-test", base_url=upstream.url, api_key_env="GEMINI_TEST_KEY"
    )
    bridge = live_server(create_app(endpoint))
    return state, openai.OpenAI(base_url=bridge.url + "/v1", api_key="x", max_retries=0)


def test_text_system_instruction_and_roles(setup: tuple[StandinState, openai.OpenAI]) -> None:
    state, client = setup
    reply = client.chat.completions.create(
        model="gemini",
        temperature=0,
        max_tokens=50,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "how are you"},
        ],
    )
    assert reply.choices[0].message.content == "echo: how are you"
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (9, 5, 14)
    sent = state.requests[-1]
    assert sent["systemInstruction"]["parts"][0]["text"] == "Be brief."
    assert [c["role"] for c in sent["contents"]] == ["user", "model", "user"]
    assert sent["generationConfig"]["temperature"] == 0 and sent["generationConfig"]["maxOutputTokens"] == 50
    assert state.headers[-1]["x-goog-api-key"] == KEY
    assert state.paths[-1] == "/v1beta/models/gemini-test:generateContent"


def test_stream_equals_completion_with_usage_chunk(setup: tuple[StandinState, openai.OpenAI]) -> None:
    state, client = setup
    messages = [{"role": "user", "content": "stream me please"}]
    whole = client.chat.completions.create(model="gemini", messages=messages).choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="gemini", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == 14
    assert state.paths[-1].endswith(":streamGenerateContent")


def test_tool_calls_and_function_responses(setup: tuple[StandinState, openai.OpenAI]) -> None:
    state, client = setup
    messages: list[dict[str, Any]] = [{"role": "user", "content": "define fusion"}]
    reply = client.chat.completions.create(
        model="gemini", messages=messages, tools=TOOLS, tool_choice={"type": "function", "function": {"name": "lookup"}}
    )
    # Gemini says STOP; a turn with a call is still tool_calls.
    assert reply.choices[0].finish_reason == "tool_calls"
    call = reply.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup" and json.loads(call.function.arguments) == {"q": "define fusion"}
    sent = state.requests[-1]
    assert sent["tools"][0]["functionDeclarations"][0]["name"] == "lookup"
    assert sent["toolConfig"]["functionCallingConfig"] == {"mode": "ANY", "allowedFunctionNames": ["lookup"]}

    # Streamed: the call and the finishReason arrive in different chunks upstream.
    chunks = list(client.chat.completions.create(model="gemini", messages=messages, tools=TOOLS, stream=True))
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id and deltas[0].function.name == "lookup" and deltas[0].function.arguments == ""
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"q": "define fusion"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]

    messages += [
        reply.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"definition": "combining"}'},
    ]
    final = client.chat.completions.create(model="gemini", messages=messages, tools=TOOLS)
    assert final.choices[0].finish_reason == "stop"
    contents = state.requests[-1]["contents"]
    assert contents[1]["parts"][0]["functionCall"] == {"name": "lookup", "args": {"q": "define fusion"}}
    assert contents[2]["parts"][0]["functionResponse"] == {"name": "lookup", "response": {"definition": "combining"}}


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_finish_reasons(setup: tuple[StandinState, openai.OpenAI], reason: str, finish: str, stream: bool) -> None:
    state, client = setup
    state.finish = reason
    messages = [{"role": "user", "content": "hi"}]
    if stream:
        chunks = list(client.chat.completions.create(model="gemini", messages=messages, stream=True))
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [finish]
    else:
        assert client.chat.completions.create(model="gemini", messages=messages).choices[0].finish_reason == finish


@pytest.mark.parametrize(
    ("status", "bridge_status", "sdk_error"),
    [
        (400, 400, openai.BadRequestError),
        (401, 401, openai.AuthenticationError),
        (403, 403, openai.PermissionDeniedError),
        (429, 429, openai.RateLimitError),
        (500, 502, openai.InternalServerError),
    ],
)
def test_errors_map_to_openai_statuses(
    setup: tuple[StandinState, openai.OpenAI], status: int, bridge_status: int, sdk_error: type
) -> None:
    state, client = setup
    state.fail_next(
        status, google_error(status, f"gemini says {status}"), headers={"Retry-After": "5"} if status == 429 else None
    )
    with pytest.raises(sdk_error) as caught:
        client.chat.completions.create(model="gemini", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == bridge_status
    assert f"gemini says {status}" in caught.value.body["message"]
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "5"
    assert KEY not in caught.value.response.text
