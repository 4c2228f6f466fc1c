"""OpenAI wire rules that real clients (the openai SDK, LangChain, LiteLLM, the AI SDK) and fuzzers
found us breaking, checked on both servers: the router and a bridge.

Nothing asked for is silently dropped (`n`, `logprobs`), what OpenAI refuses is refused, a
message with tool calls carries `content: null`, a stream has one id/created/model and no empty
text delta before a tool call, `models.retrieve()` works, absurd JSON is a 400 that leaves the
connection usable, and every failure of a run names the run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from bridge.app import create_app as create_bridge
from bridge.endpoint import EndpointConfig
from server.app import create_app
from tests.router_helpers import demo_endpoints, panel_config
from tests.standins.openai_standin import create_openai_standin
from tests.standins.recorder import StandinState

ASK = [{"role": "user", "content": "Compare two ways to cache a web page"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


@pytest.fixture
def upstream(live_server: Any) -> tuple[StandinState, Any]:
    state = StandinState()
    return state, live_server(create_openai_standin(state))


@pytest.fixture
def servers(tmp_path: Path, live_server: Any, upstream: tuple[StandinState, Any]) -> dict[str, Any]:
    """A router (three mocks and an OpenAI stand-in endpoint) and a bridge for the same stand-in."""
    _, standin = upstream
    openai_endpoint = {"id": "gpt", "provider": "openai", "model": "gpt-x", "base_url": standin.url + "/v1"}
    config = panel_config(tmp_path, [*demo_endpoints(), openai_endpoint], panel_models=["fast", "careful"])
    return {
        "router": live_server(create_app(config)),
        "bridge": live_server(create_bridge(EndpointConfig.model_validate(openai_endpoint))),
        "mock-bridge": live_server(create_bridge(EndpointConfig(id="m", provider="mock", model="mock-1"))),
    }


def _post(server: Any, body: dict[str, Any]) -> httpx2.Response:
    return httpx2.post(server.url + "/v1/chat/completions", json=body)


def _frames(response: httpx2.Response) -> list[dict[str, Any]]:
    return [
        json.loads(line[6:])
        for line in response.text.splitlines()
        if line.startswith("data: ") and line != "data: [DONE]"
    ]


@pytest.mark.parametrize("which", ["router", "bridge"])
def test_more_than_one_choice_is_refused_not_ignored(servers: dict[str, Any], which: str) -> None:
    response = _post(servers[which], {"model": "gpt", "messages": ASK, "n": 2})
    assert response.status_code == 400 and response.json()["error"]["code"] == "unsupported_n"


@pytest.mark.parametrize("which", ["router", "bridge"])
@pytest.mark.parametrize("stream", [False, True])
def test_logprobs_pass_through_where_the_provider_has_them(
    servers: dict[str, Any], upstream: tuple[StandinState, Any], which: str, stream: bool
) -> None:
    state, _ = upstream
    body = {"model": "gpt", "messages": ASK, "logprobs": True, "top_logprobs": 2, "stream": stream}
    response = _post(servers[which], body)
    assert response.status_code == 200, response.text
    assert state.requests[-1]["logprobs"] is True and state.requests[-1]["top_logprobs"] == 2
    if stream:
        tokens = [
            entry["token"]
            for frame in _frames(response)
            for choice in frame["choices"]
            for entry in (choice.get("logprobs") or {}).get("content", [])
        ]
        assert "".join(tokens) == "echo: Compare two ways to cache a web page"
    else:
        content = response.json()["choices"][0]["logprobs"]["content"]
        assert [entry["logprob"] for entry in content] == [-0.5] * len(content) and content


@pytest.mark.parametrize(("which", "model"), [("router", "fusionkit/panel"), ("router", "fast"), ("mock-bridge", "m")])
def test_logprobs_are_refused_where_there_are_none(servers: dict[str, Any], which: str, model: str) -> None:
    response = _post(servers[which], {"model": model, "messages": ASK, "logprobs": True})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unsupported_parameter" and error["param"] == "logprobs"


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"max_tokens": 1e23}, "max_tokens"),
        ({"max_completion_tokens": 10**12}, "max_completion_tokens"),
        ({"tools": [{"type": "function", "function": {"name": "get weather!"}}]}, "tools[0].function.name"),
    ],
)
@pytest.mark.parametrize("which", ["router", "bridge"])
def test_what_openai_refuses_is_refused(
    servers: dict[str, Any], which: str, change: dict[str, Any], param: str
) -> None:
    response = _post(servers[which], {"model": "gpt", "messages": ASK, **change})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


@pytest.mark.parametrize("which", ["router", "bridge"])
def test_a_tool_call_message_carries_content_null(servers: dict[str, Any], which: str) -> None:
    response = _post(servers[which], {"model": "gpt", "messages": ASK, "tools": TOOLS})
    message = response.json()["choices"][0]["message"]
    assert "content" in message and message["content"] is None and message["tool_calls"]


@pytest.mark.parametrize("which", ["router", "bridge"])
def test_a_stream_that_starts_with_a_tool_call_sends_no_empty_text_first(servers: dict[str, Any], which: str) -> None:
    response = _post(servers[which], {"model": "gpt", "messages": ASK, "tools": TOOLS, "stream": True})
    frames = _frames(response)
    deltas = [f["choices"][0]["delta"] for f in frames if f["choices"]]
    assert deltas[0]["role"] == "assistant"
    assert not any("content" in d for d in deltas), deltas  # no "" text part for the AI SDK to render
    assert any(d.get("tool_calls") for d in deltas)


def test_every_chunk_of_a_fused_stream_has_one_id_created_and_model(tmp_path: Path, live_server: Any) -> None:
    # The synthesizer writes 12 tokens a second, so the stream spans several clock seconds.
    config = panel_config(tmp_path / "slow", demo_endpoints(fast={"tokens_per_s": 12}))
    router = live_server(create_app(config))
    response = _post(router, {"model": "fusionkit/panel", "messages": ASK, "stream": True})
    frames = _frames(response)
    assert len(frames) > 20
    assert len({(f["id"], f["created"], f["model"]) for f in frames}) == 1


@pytest.mark.parametrize(("which", "model"), [("router", "fusionkit/panel"), ("router", "gpt"), ("bridge", "gpt")])
def test_models_retrieve(servers: dict[str, Any], which: str, model: str) -> None:
    client = openai.OpenAI(base_url=servers[which].url + "/v1", api_key="x", max_retries=0)
    assert client.models.retrieve(model).id == model
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


@pytest.mark.parametrize("which", ["router", "bridge"])
def test_json_nested_beyond_reason_is_a_400_and_the_connection_lives_on(servers: dict[str, Any], which: str) -> None:
    deep = "[" * 5000 + "]" * 5000
    raw = '{"model": "gpt", "messages": [{"role": "user", "content": "x"}], "metadata": ' + deep + "}"
    with httpx2.Client(base_url=servers[which].url) as client:
        refused = client.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_json"
        again = client.post("/v1/chat/completions", json={"model": "gpt", "messages": ASK})
        assert again.status_code == 200  # the same keep-alive connection answers the next request


def test_a_failed_run_names_itself_in_the_error_body_and_the_error_frame(
    servers: dict[str, Any], upstream: tuple[StandinState, Any]
) -> None:
    state, _ = upstream
    state.fail_next(
        400, {"error": {"message": "no", "type": "invalid_request_error", "param": None, "code": None}}, times=2
    )
    whole = _post(servers["router"], {"model": "gpt", "messages": ASK})
    assert whole.status_code == 400
    run_id = whole.json()["error"]["run_id"]
    assert run_id.startswith("run_") and whole.headers["x-fusion-run-id"] == run_id
    streamed = _post(servers["router"], {"model": "gpt", "messages": ASK, "stream": True})
    error = _frames(streamed)[-1]["error"]
    assert error["run_id"] == streamed.headers["x-fusion-run-id"] != run_id
    run = httpx2.get(f"{servers['router'].url}/v1/fusion/runs/{error['run_id']}")
    assert run.status_code == 200  # the id leads to the recorded, failed run
