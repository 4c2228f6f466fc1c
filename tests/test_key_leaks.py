"""A provider key that an upstream echoes back never leaves the process it was meant for.

OpenAI's own 401 says "Incorrect API key provided: sk-...": every provider's stand-in is told to
answer like that, and the key is then searched for in everything a user or an operator can see
(responses, stream frames, logs, trace files, the run store), with the endpoint reached
in-process by the router and through its bridge.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bridge.app import create_app as create_bridge
from bridge.endpoint import EndpointConfig
from server.app import create_app
from tests.router_helpers import demo_endpoints, panel_config
from tests.standins.anthropic_standin import anthropic_error, create_anthropic_standin
from tests.standins.gemini_standin import create_gemini_standin, google_error
from tests.standins.openai_standin import create_openai_standin
from tests.standins.recorder import StandinState

SECRET = "sk-proj-PLANTED-9c1d2b7f3e"
ECHO = f"Incorrect API key provided: Bearer {SECRET}. You can find your API key at https://example.invalid"


def _openai_error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}


# provider -> (stand-in factory, error body factory, base URL suffix)
PROVIDERS: dict[str, tuple[Any, Any, str]] = {
    "openai": (create_openai_standin, _openai_error, "/v1"),
    "openai-compatible": (create_openai_standin, _openai_error, "/v1"),
    "anthropic": (create_anthropic_standin, anthropic_error, ""),
    "google": (create_gemini_standin, google_error, ""),
}


@pytest.mark.parametrize("path", ["in-process", "bridge"])
@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_an_echoed_key_is_scrubbed_everywhere(
    provider: str,
    path: str,
    tmp_path: Path,
    live_server: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PLANTED_KEY", SECRET)
    monkeypatch.setenv("FUSION_TRACE_DIR", str(tmp_path / "traces"))
    factory, error, suffix = PROVIDERS[provider]
    state = StandinState()
    upstream = live_server(factory(state))
    leaky = {
        "id": "leaky",
        "provider": provider,
        "model": "planted-model",
        "base_url": upstream.url + suffix,
        "api_key_env": "PLANTED_KEY",
    }
    config = panel_config(tmp_path, [*demo_endpoints(), leaky], judge_model="careful")
    bridges = None
    if path == "bridge":
        bridge = live_server(create_bridge(EndpointConfig.model_validate(leaky)))
        bridges = {"leaky": bridge.url}
    router = live_server(create_app(config, bridges=bridges))
    state.fail_next(401, error(401, ECHO), times=3)

    chat = f"{router.url}/v1/chat/completions"
    question = [{"role": "user", "content": "compare a and b"}]
    seen = [
        httpx2.post(chat, json={"model": "leaky", "messages": question}),
        httpx2.post(chat, json={"model": "leaky", "messages": question, "stream": True}),
        httpx2.post(chat, json={"model": "fusionkit/panel", "messages": question}),
    ]
    # The router's stream has begun (role chunk, keep-alives) before any model answers: the 401 is an error frame.
    assert [r.status_code for r in seen] == [401, 200, 200]
    assert '"code":"upstream_authentication_error"' in seen[1].text.replace(" ", "")
    for response in seen[:2]:
        assert "Incorrect API key provided" in response.text  # the upstream's reason reaches the client ...
    assert any(f["endpoint_id"] == "leaky" for f in seen[2].json()["fusionkit"]["failed_members"])
    # The key did reach the upstream: the test would prove nothing if it had never been sent.
    sent = state.headers[-1]
    assert any(SECRET in sent.get(h, "") for h in ("authorization", "x-api-key", "x-goog-api-key"))

    places = {"responses": "\n".join(r.text for r in seen), "logs": caplog.text}
    for file in tmp_path.rglob("*"):
        if file.is_file():
            places[str(file.relative_to(tmp_path))] = file.read_bytes().decode("utf-8", "replace")
    assert any(p.startswith("traces") for p in places), "tracing wrote nothing"
    assert any(p.startswith("runs.sqlite3") for p in places), "the run store wrote nothing"
    for where, text in places.items():
        assert SECRET not in text, f"the key leaked into {where}"  # ... but never the key
