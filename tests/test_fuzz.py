"""Property-based bodies against every POST route of both servers: never a 5xx, always the OpenAI error shape.

A bounded number of examples runs in the suite; `make fuzz` runs many more
(FUSIONKIT_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
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


OPENAI_ERROR = {"message", "type", "param", "code"}
# The native routes (/v1/fusion/*) answer the seed's error fields beside OpenAI's.
NATIVE_ERROR = OPENAI_ERROR | {"error_kind", "error_code", "retryable", "owner", "terminal_reason"}


def _check(response: httpx2.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        native = response.url.path.startswith("/v1/fusion/") and response.status_code != 405
        assert set(error) == (NATIVE_ERROR if native else OPENAI_ERROR) and error["message"], error


def _post(url: str, body: Any) -> None:
    with httpx2.stream(
        "POST", url, content=json.dumps(body), headers={"content-type": "application/json"}, timeout=30
    ) as response:
        response.read()
        _check(response)


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
