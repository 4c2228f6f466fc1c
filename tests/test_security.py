"""Auth, bind safety, and API keys that never leak into answers, logs, the run store or traces."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from click.testing import CliRunner

from fusionkit_cli.main import cli
from server.app import create_app
from tests.router_helpers import demo_endpoints, panel_config
from tests.standins.anthropic_standin import anthropic_error, create_anthropic_standin
from tests.standins.recorder import StandinState

SECRET = "sk-ant-LEAKCHECK-7f3e9c1d2b"


def test_bearer_auth_guards_every_v1_route(tmp_path: Path, live_server: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FK_ROUTER_KEY", "router-token-123")
    config = panel_config(tmp_path, demo_endpoints(), server={"api_key_env": "FK_ROUTER_KEY"})
    server = live_server(create_app(config))
    for path in ("/v1/models", "/v1/fusion/runs"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic router-token-123"}):
            response = httpx2.get(server.url + path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.json()["error"]["code"] == "invalid_api_key"
    assert httpx2.get(server.url + "/health").status_code == 200
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=server.url + "/v1", api_key="wrong", max_retries=0).models.list()
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="router-token-123", max_retries=0)
    reply = client.chat.completions.create(model="fusionkit/panel", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content


def test_non_loopback_bind_without_a_key_is_refused(tmp_path: Path) -> None:
    config = tmp_path / "panel.yaml"
    config.write_text("endpoints:\n  - {id: a, provider: mock, model: m}\n")
    result = CliRunner().invoke(cli, ["serve", "--config", str(config), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--insecure-no-auth" in result.output


def test_keys_never_leak(
    tmp_path: Path, live_server: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("LEAKY_KEY", SECRET)
    monkeypatch.setenv("FUSION_TRACE_DIR", str(tmp_path / "traces"))
    state = StandinState()
    upstream = live_server(create_anthropic_standin(state))
    endpoints = [
        *demo_endpoints(),
        {
            "id": "claude",
            "provider": "anthropic",
            "model": "claude-test",
            "base_url": upstream.url,
            "api_key_env": "LEAKY_KEY",
        },
    ]
    config = panel_config(tmp_path, endpoints, judge_model="careful")
    server = live_server(create_app(config))
    state.fail_next(401, anthropic_error(401, "invalid x-api-key"), times=2)
    bodies = []
    for model in ("fusionkit/panel", "claude"):
        response = httpx2.post(
            server.url + "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "compare a and b"}]},
        )
        bodies.append(response.text)
    ok = httpx2.post(
        server.url + "/v1/chat/completions", json={"model": "claude", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert ok.status_code == 200
    assert SECRET in (state.headers[-1].get("x-api-key", "") + state.headers[-1].get("authorization", ""))

    assert "invalid x-api-key" in bodies[1]  # the upstream's reason reaches the client ...
    places = {"responses": "\n".join(bodies) + ok.text, "logs": caplog.text}
    for path in [*tmp_path.rglob("*")]:
        if path.is_file():
            places[str(path)] = path.read_bytes().decode("utf-8", "replace")
    assert any("traces" in p for p in places), "tracing wrote nothing"
    for where, text in places.items():
        assert SECRET not in text, f"the key leaked into {where}"  # ... but never the key
    validated = (
        CliRunner().invoke(cli, ["validate", str(tmp_path / "panel.yaml")])
        if (tmp_path / "panel.yaml").exists()
        else None
    )
    assert validated is None or SECRET not in validated.output


def test_cors_is_off_by_default(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    preflight = httpx2.options(
        server.url + "/v1/chat/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    response = httpx2.get(server.url + "/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers
