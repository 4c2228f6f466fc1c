"""Property-based bodies against every POST route of both servers: never a 5xx, always the OpenAI error shape.

A bounded number of examples runs in the suite; `make fuzz` runs many more
(FUSIONKIT_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.app import create_app as create_bridge
from bridge.endpoint import EndpointConfig
from server.app import create_app as create_router
from tests.livesrv import LiveServer
from tests.router_helpers import demo_endpoints, panel_config

EXAMPLES = int(os.environ.get("FUSIONKIT_FUZZ_EXAMPLES", "40"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
roles = st.sampled_from(["system", "developer", "user", "assistant", "tool", "wizard", "", None])
contents = (
    st.none()
    | st.text(max_size=30)
    | st.lists(
        st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "audio"]), "text": json_values}),
        max_size=3,
    )
)
messages = st.lists(
    st.fixed_dictionaries(
        {"role": roles, "content": contents},
        optional={"tool_call_id": json_values, "tool_calls": json_values, "name": json_values},
    ),
    max_size=4,
)
chat_bodies = st.fixed_dictionaries(
    {"messages": messages | json_values},
    optional={
        "model": st.sampled_from(["m", "fusionkit/panel", "fusionkit/router", "nope"]) | json_values,
        "temperature": json_values | st.floats(-1, 3),
        "max_tokens": json_values | st.integers(-5, 50),
        "stream": st.booleans() | json_values,
        "stream_options": json_values,
        "n": json_values,
        "tools": json_values,
        "tool_choice": json_values,
        "response_format": json_values,
        "stop": json_values,
        "seed": json_values,
        "fusion": json_values,
    },
)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    bridge = LiveServer(create_bridge(EndpointConfig(id="m", provider="mock", model="mock-1"))).__enter__()
    router = LiveServer(create_router(panel_config(tmp, demo_endpoints()))).__enter__()
    yield {"bridge": bridge.url, "router": router.url}
    router.__exit__(None, None, None)
    bridge.__exit__(None, None, None)


def _check(response: httpx2.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]


def _check_anthropic(response: httpx2.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        body = response.json()
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"} and body["error"]["message"]


def _post(url: str, body: Any, check: Callable[[httpx2.Response], None] = _check) -> None:
    with httpx2.stream(
        "POST", url, content=json.dumps(body), headers={"content-type": "application/json"}, timeout=30
    ) as response:
        response.read()
        check(response)


@FUZZ
@given(body=chat_bodies)
def test_bridge_chat_completions(servers: dict[str, str], body: dict[str, Any]) -> None:
    _post(servers["bridge"] + "/v1/chat/completions", body)


@FUZZ
@given(body=chat_bodies)
def test_router_chat_completions(servers: dict[str, str], body: dict[str, Any]) -> None:
    _post(servers["router"] + "/v1/chat/completions", body)


@FUZZ
@given(
    path=st.sampled_from(["/v1/fusion/runs", "/v1/fusion/trajectories:fuse", "/v1/fusion/trajectory:step"]),
    body=json_values
    | st.fixed_dictionaries(
        {"messages": messages, "trajectories": json_values, "prompt": json_values, "mode": json_values}
    ),
)
def test_router_native_routes(servers: dict[str, str], path: str, body: Any) -> None:
    _post(servers["router"] + path, body)


@FUZZ
@given(run_id=st.text(max_size=40), suffix=st.sampled_from(["", "/inspect", "/events", "/cancel", "/tool-results"]))
def test_run_ids(servers: dict[str, str], run_id: str, suffix: str) -> None:
    url = servers["router"] + "/v1/fusion/runs/" + quote(run_id, safe="")
    method = "POST" if suffix in ("/cancel", "/tool-results") else "GET"
    response = httpx2.request(method, url + suffix, json={}, timeout=30)
    assert response.status_code < 500, response.text


# Shaped like what Codex and the Agents SDK send, every part of it open to junk.
response_items = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                [
                    "message",
                    "function_call",
                    "function_call_output",
                    "custom_tool_call",
                    "reasoning",
                    "web_search_call",
                    "x",
                ]
            )
            | json_values
        },
        optional={
            "role": roles,
            "content": contents
            | st.lists(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["input_text", "output_text", "input_image", "x"]), "text": json_values}
                ),
                max_size=3,
            ),
            "call_id": json_values,
            "name": json_values,
            "arguments": json_values,
            "output": json_values,
            "input": json_values,
            "namespace": json_values,
        },
    ),
    max_size=4,
)
response_tools = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["function", "custom", "namespace", "web_search", "tool_search"]) | json_values},
        optional={"name": json_values, "parameters": json_values, "tools": json_values, "format": json_values},
    ),
    max_size=3,
)
responses_bodies = st.fixed_dictionaries(
    {"input": st.text(max_size=20) | response_items | json_values},
    optional={
        "model": st.sampled_from(["fusionkit/panel", "fast", "nope"]) | json_values,
        "instructions": json_values,
        "tools": response_tools | json_values,
        "tool_choice": json_values | st.sampled_from(["auto", "none", "required"]),
        "max_output_tokens": json_values,
        "temperature": json_values,
        "text": json_values,
        "stream": st.booleans() | json_values,
        "store": json_values,
        "previous_response_id": json_values | st.just("resp_" + "0" * 24),
        "reasoning": json_values,
        "fusion": json_values,
    },
)
blocks = st.lists(
    st.fixed_dictionaries(
        {"type": st.sampled_from(["text", "image", "tool_use", "tool_result", "thinking", "document"]) | json_values},
        optional={
            "text": json_values,
            "id": json_values,
            "name": json_values,
            "input": json_values,
            "tool_use_id": json_values,
            "content": json_values,
            "is_error": json_values,
            "signature": json_values,
            "source": json_values,
            "cache_control": json_values,
        },
    ),
    max_size=3,
)
messages_bodies = st.fixed_dictionaries(
    {
        "messages": st.lists(
            st.fixed_dictionaries(
                {
                    "role": st.sampled_from(["user", "assistant", "system", "tool"]) | json_values,
                    "content": st.text(max_size=20) | blocks | json_values,
                }
            ),
            max_size=4,
        )
        | json_values
    },
    optional={
        "model": st.sampled_from(["fusionkit/panel", "fast", "nope"]) | json_values,
        "max_tokens": st.integers(-5, 50) | json_values,
        "system": json_values,
        "tools": st.lists(
            st.fixed_dictionaries({"name": json_values, "input_schema": json_values}, optional={"type": json_values}),
            max_size=2,
        )
        | json_values,
        "tool_choice": json_values,
        "thinking": json_values,
        "stream": st.booleans() | json_values,
        "temperature": json_values,
        "stop_sequences": json_values,
    },
)


@FUZZ
@given(body=responses_bodies)
def test_router_responses(servers: dict[str, str], body: dict[str, Any]) -> None:
    _post(servers["router"] + "/v1/responses", body)


@FUZZ
@given(
    body=messages_bodies, path=st.sampled_from(["/v1/messages", "/v1/messages?beta=true", "/v1/messages/count_tokens"])
)
def test_router_messages(servers: dict[str, str], body: dict[str, Any], path: str) -> None:
    _post(servers["router"] + path, body, _check_anthropic)
