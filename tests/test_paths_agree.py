"""One way to reach a model: an OpenAI-compatible upstream's quirks give the same answer whether the
router calls it in-process (`fusionkit serve`) or through its bridge (`fusionkit up`).

Each case sets a quirk on one stand-in, asks the router for that endpoint directly (streamed and
not), once per path, and compares what the client got: status, text, tool calls, finish reason,
and for errors the whole error object (but the run id, which names a different run).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bridge.app import create_app as create_bridge
from bridge.endpoint import EndpointConfig
from server.app import create_app
from tests.livesrv import free_port
from tests.router_helpers import panel_config
from tests.standins.openai_standin import create_openai_standin
from tests.standins.recorder import StandinState

TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
ASK = [{"role": "user", "content": "look it up"}]
KEY = "sk-paths-agree-0123456789"


def _quirk(state: StandinState, name: str) -> dict[str, Any]:
    """Set one quirk on the stand-in; returns the extra request fields the quirk needs."""
    if name == "error_body":
        body = {
            "error": {
                "message": "messages[0]: too long",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        }
        state.fail_next(400, body, times=2)
    elif name == "rate_limited":
        state.fail_next(
            429, {"error": {"message": "slow down", "type": "rate_limit_error"}}, {"Retry-After": "30"}, times=6
        )
    elif name == "ollama_error":  # Ollama's error is a bare string
        state.fail_next(404, {"error": "model 'm' not found, try pulling it first"}, times=2)
    elif name == "retry_after_ms":
        state.fail_next(503, {"error": {"message": "overloaded"}}, {"Retry-After-Ms": "1500"}, times=6)
    elif name == "echoed_key":  # an upstream that repeats the key it was sent: scrubbed on both paths
        state.fail_next(401, {"error": {"message": f"bad key {KEY}", "type": "invalid_request_error"}}, times=2)
    elif name == "huge_token":  # one SSE line of 600 KB: over aiohttp's own line limit
        state.answer = "x" * 600_000
    elif name in ("error_frame", "truncate", "reset", "malformed_json"):
        state.stream_fault = name
    elif name == "eos_token":
        state.finish = "eos_token"
    elif name == "max_tokens_finish":
        state.finish = "max_tokens"
    elif name == "stop_beside_tool_calls":
        state.finish = "stop"
        return {"tools": TOOLS}
    elif name == "index_less_tool_deltas":
        state.stream_fault = "compact_tool_calls"
        return {"tools": TOOLS}
    return {}


def _seen(response: httpx2.Response, stream: bool) -> dict[str, Any]:
    """What the client got, without what differs by nature (ids, run ids, timings, metadata)."""
    if response.status_code != 200:
        error = response.json()["error"]
        error.pop("run_id", None)
        return {"status": response.status_code, "error": error, "retry_after": response.headers.get("retry-after")}
    if not stream:
        choice = response.json()["choices"][0]
        calls = [(c["function"]["name"], c["function"]["arguments"]) for c in choice["message"].get("tool_calls") or []]
        return {"status": 200, "text": choice["message"]["content"], "calls": calls, "finish": choice["finish_reason"]}
    frames = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: {")]
    if "error" in frames[-1]:
        frames[-1]["error"].pop("run_id", None)
        return {"status": 200, "error": frames[-1]["error"]}
    deltas = [f["choices"][0] for f in frames if f.get("choices")]
    calls: dict[int, list[str]] = {}
    for choice in deltas:
        for call in choice["delta"].get("tool_calls") or []:
            entry = calls.setdefault(call["index"], ["", ""])
            entry[0] += (call.get("function") or {}).get("name") or ""
            entry[1] += (call.get("function") or {}).get("arguments") or ""
    text = "".join(c["delta"].get("content") or "" for c in deltas)
    finish = [c["finish_reason"] for c in deltas if c["finish_reason"]]
    return {
        "status": 200,
        "text": text or None,
        "calls": [tuple(v) for _, v in sorted(calls.items())],
        "finish": finish,
    }


QUIRKS = [
    "error_body",
    "ollama_error",
    "retry_after_ms",
    "echoed_key",
    "rate_limited",
    "error_frame",
    "truncate",
    "reset",
    "malformed_json",
    "huge_token",
    "eos_token",
    "max_tokens_finish",
    "stop_beside_tool_calls",
    "index_less_tool_deltas",
]


def _both_paths(
    tmp_path: Path, live_server: Any, endpoint: dict[str, Any], body: dict[str, Any], before: Any = None
) -> dict[str, Any]:
    """What a client of the router saw, per path; `before()` (if given) runs before each request."""
    seen = {}
    for path in ("in-process", "bridge"):
        bridges = None
        if path == "bridge":
            bridges = {"llm": live_server(create_bridge(EndpointConfig.model_validate(endpoint))).url}
        config = panel_config(tmp_path / path, [endpoint], budget={"wall_clock_s": 2})
        router = live_server(create_app(config, bridges=bridges))
        extra = before() if before is not None else {}
        response = httpx2.post(router.url + "/v1/chat/completions", json={"model": "llm", **body, **extra})
        seen[path] = _seen(response, bool(body.get("stream")))
    return seen


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("quirk", QUIRKS)
def test_in_process_and_through_a_bridge_the_client_sees_the_same(
    tmp_path: Path, live_server: Any, quirk: str, stream: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FK_PATHS_KEY", KEY)
    state = StandinState()
    upstream = live_server(create_openai_standin(state))  # one upstream: its URL is in error messages
    endpoint = {
        "id": "llm",
        "provider": "openai-compatible",
        "model": "m",
        "base_url": upstream.url + "/v1",
        "api_key_env": "FK_PATHS_KEY",
    }

    def set_quirk() -> dict[str, Any]:
        state.errors.clear()
        return _quirk(state, quirk)

    seen = _both_paths(tmp_path, live_server, endpoint, {"messages": ASK, "stream": stream}, set_quirk)
    assert seen["in-process"] == seen["bridge"]
    assert seen["bridge"]["status"] in (200, 400, 401, 404, 429, 502, 503)
    assert KEY not in json.dumps(seen)
    assert state.headers[-1]["authorization"] == f"Bearer {KEY}"  # the key went out on either path


@pytest.mark.parametrize("stream", [False, True])
def test_an_unreachable_upstream_is_named_the_same_without_its_credentials(
    tmp_path: Path, live_server: Any, stream: bool
) -> None:
    port = free_port()
    endpoint = {
        "id": "llm",
        "provider": "openai-compatible",
        "model": "m",
        "base_url": f"http://user:pw-secret@127.0.0.1:{port}/v1",
    }
    seen = _both_paths(tmp_path, live_server, endpoint, {"messages": ASK, "stream": stream})
    assert seen["in-process"] == seen["bridge"]
    assert f"cannot reach upstream at http://127.0.0.1:{port}/v1" in json.dumps(seen)
    assert "pw-secret" not in json.dumps(seen)


def test_credentials_in_the_url_reach_the_upstream_on_either_path(tmp_path: Path, live_server: Any) -> None:
    state = StandinState()
    upstream = live_server(create_openai_standin(state))
    base_url = upstream.url.replace("http://", "http://user:pw-secret@") + "/v1"
    endpoint = {"id": "llm", "provider": "openai-compatible", "model": "m", "base_url": base_url}
    seen = _both_paths(tmp_path, live_server, endpoint, {"messages": ASK})
    assert seen["in-process"] == seen["bridge"] and seen["bridge"]["status"] == 200
    # Basic auth from the URL, as httpx sends it (the SDK's placeholder bearer is overridden by it).
    assert [h["authorization"] for h in state.headers] == ["Basic dXNlcjpwdy1zZWNyZXQ="] * 2
