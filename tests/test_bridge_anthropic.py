"""The bridge fronting Anthropic (the stand-in) through the real anthropic SDK, driven by the openai SDK."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from bridge.app import create_app
from bridge.endpoint import EndpointConfig
from tests.standins.anthropic_standin import anthropic_error, create_anthropic_standin
from tests.standins.recorder import StandinState

KEY = "sk-ant-test-secret-456"
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
    monkeypatch.setenv("ANTHROPIC_TEST_KEY", KEY)
    state = StandinState()
    upstream = live_server(create_anthropic_standin(state))
    endpoint = EndpointConfig(
        id="claude", provider="anthropic", model="claude-test", base_url=upstream.url, api_key_env="ANTHROPIC_TEST_KEY"
    )
    bridge = live_server(create_app(endpoint))
    return state, openai.OpenAI(base_url=bridge.url + "/v1", api_key="x", max_retries=0)


def test_text_system_prompt_and_merged_turns(setup: tuple[StandinState, openai.OpenAI]) -> None:
    state, client = setup
    reply = client.chat.completions.create(
        model="claude",
        temperature=0,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "first"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ],
    )
    assert reply.choices[0].message.content == "echo: firstsecond"  # the stand-in echoes the merged turn
    assert reply.choices[0].finish_reason == "stop"
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (11, 7, 18)
    sent = state.requests[-1]
    assert sent["system"] == "Be brief." and sent["temperature"] == 0 and sent["max_tokens"] > 0
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]}
    ]
    # Older SDKs send the key as x-api-key, the installed one as a bearer token: either way it arrives.
    headers = state.headers[-1]
    assert KEY in (headers.get("x-api-key"), headers.get("authorization", "").removeprefix("Bearer "))
    assert "anthropic-version" in headers


def test_streamed_text_equals_the_completion(setup: tuple[StandinState, openai.OpenAI]) -> None:
    _, client = setup
    messages = [{"role": "user", "content": "stream me please"}]
    whole = client.chat.completions.create(model="claude", messages=messages).choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model="claude", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole == "echo: stream me please"
    assert chunks[-1].usage.completion_tokens == 7 and chunks[-1].choices == []


def test_tool_loop_translates_both_ways(setup: tuple[StandinState, openai.OpenAI]) -> None:
    state, client = setup
    messages: list[dict[str, Any]] = [{"role": "user", "content": "define fusion"}]
    reply = client.chat.completions.create(model="claude", messages=messages, tools=TOOLS, tool_choice="required")
    call = reply.choices[0].message.tool_calls[0]
    assert reply.choices[0].finish_reason == "tool_calls"
    assert (call.id, call.function.name, json.loads(call.function.arguments)) == (
        "toolu_01",
        "lookup",
        {"q": "define fusion"},
    )
    sent = state.requests[-1]
    assert sent["tools"] == [
        {"name": "lookup", "description": "Look up a word.", "input_schema": TOOLS[0]["function"]["parameters"]}
    ]
    assert sent["tool_choice"] == {"type": "any"}

    streamed = list(client.chat.completions.create(model="claude", messages=messages, tools=TOOLS, stream=True))
    deltas = [d for c in streamed if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert deltas[0].id == "toolu_01" and deltas[0].function.name == "lookup"
    assert json.loads("".join(d.function.arguments or "" for d in deltas)) == {"q": "define fusion"}
    assert [c.choices[0].finish_reason for c in streamed if c.choices and c.choices[0].finish_reason] == ["tool_calls"]

    messages += [
        reply.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "toolu_01", "content": "fusion: combining things"},
    ]
    final = client.chat.completions.create(model="claude", messages=messages, tools=TOOLS)
    assert final.choices[0].finish_reason == "stop"
    turns = state.requests[-1]["messages"]
    assert turns[1] == {
        "role": "assistant",
        "content": [{"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {"q": "define fusion"}}],
    }
    assert turns[2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_01", "content": "fusion: combining things"}],
    }


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("refusal", "content_filter"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_stop_reasons_map_to_finish_reasons(
    setup: tuple[StandinState, openai.OpenAI], stop_reason: str, finish: str, stream: bool
) -> None:
    state, client = setup
    state.finish = stop_reason
    messages = [{"role": "user", "content": "hi"}]
    if stream:
        chunks = list(client.chat.completions.create(model="claude", messages=messages, stream=True))
        assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == [finish]
    else:
        assert client.chat.completions.create(model="claude", messages=messages).choices[0].finish_reason == finish


@pytest.mark.parametrize(
    ("status", "bridge_status", "sdk_error"),
    [
        (400, 400, openai.BadRequestError),
        (401, 401, openai.AuthenticationError),
        (429, 429, openai.RateLimitError),
        (500, 502, openai.InternalServerError),
        (529, 503, openai.InternalServerError),
    ],
)
def test_errors_map_to_openai_statuses(
    setup: tuple[StandinState, openai.OpenAI], status: int, bridge_status: int, sdk_error: type
) -> None:
    state, client = setup
    state.fail_next(
        status,
        anthropic_error(status, f"anthropic says {status}"),
        headers={"retry-after": "3"} if status == 429 else None,
    )
    with pytest.raises(sdk_error) as caught:
        client.chat.completions.create(model="claude", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == bridge_status
    assert f"anthropic says {status}" in caught.value.body["message"]
    assert set(caught.value.body) == {"message", "type", "param", "code"}
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "3"
    assert KEY not in caught.value.response.text
