"""Auth, bind safety, and API keys that never leak into answers, logs, the run store or traces."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
from click.testing import CliRunner

from bridge.app import create_app as create_bridge
from bridge.auth import MissingKeyError
from bridge.endpoint import EndpointConfig
from bridge.http import app_routes
from fusionkit_cli.main import cli
from server.app import create_app
from server.clients import build_clients
from tests.livesrv import free_port
from tests.router_helpers import demo_endpoints, panel_config
from tests.standins.anthropic_standin import anthropic_error, create_anthropic_standin
from tests.standins.recorder import StandinState
from tests.up_helpers import run_fusionkit, write_config

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


def test_a_body_is_read_only_after_auth_on_every_route_that_takes_one(
    tmp_path: Path, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client without the key learns nothing about what it sent: 401, never the body's 400 or 422."""
    monkeypatch.setenv("FK_ROUTER_KEY", "router-token-123")
    config = panel_config(tmp_path, demo_endpoints(), server={"api_key_env": "FK_ROUTER_KEY"})
    router = create_app(config)
    bridge = create_bridge(EndpointConfig.model_validate(demo_endpoints()[0]), auth_key="bridge-token-456")
    for app in (router, bridge):
        server = live_server(app)
        posted = [r for r in app_routes(app) if getattr(r.endpoint, "body_model", None) is not None]
        assert len(posted) >= (9 if app is router else 1)  # chat, doors, native runs, trajectories, rejudge
        for route in posted:
            path = route.path_format.replace("{run_id}", "run_unknown")
            response = httpx2.post(server.url + path, content=b"{not json", headers={"content-type": "text/plain"})
            assert response.status_code == 401, (path, response.text)


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
    config_file = tmp_path / "panel.yaml"
    config_file.write_text(config.model_dump_json())  # JSON is YAML
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
    # `validate` names the variable a key comes from, never its value.
    validated = CliRunner().invoke(cli, ["validate", str(config_file)])
    assert validated.exit_code == 0 and "key from $LEAKY_KEY" in validated.output
    assert SECRET not in validated.output


def test_cors_is_off_by_default(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    preflight = httpx2.options(
        server.url + "/v1/chat/completions",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert "access-control-allow-origin" not in preflight.headers
    response = httpx2.get(server.url + "/v1/models", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in response.headers


ROUTER_KEY_UNSET = "server.api_key_env: environment variable FK_ROUTER_KEY is not set (or is empty); refusing to start"


@pytest.mark.parametrize("value", [None, "", "  "], ids=["unset", "empty", "blank"])
def test_a_named_but_unset_router_key_never_means_auth_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("FK_ROUTER_KEY", raising=False)
    else:
        monkeypatch.setenv("FK_ROUTER_KEY", value)
    config = panel_config(tmp_path, demo_endpoints(), server={"api_key_env": "FK_ROUTER_KEY"})
    with pytest.raises(MissingKeyError, match="FK_ROUTER_KEY"):
        create_app(config)
    config_file = write_config(tmp_path, free_port(), server={"api_key_env": "FK_ROUTER_KEY"})
    validated = CliRunner().invoke(cli, ["validate", str(config_file)])
    assert validated.exit_code == 0 and "warning: " in validated.stderr and "FK_ROUTER_KEY" in validated.stderr


@pytest.mark.parametrize("command", ["serve", "up"])
def test_serve_and_up_refuse_to_start_without_the_router_key_they_name(tmp_path: Path, command: str) -> None:
    config = write_config(tmp_path, free_port(), server={"api_key_env": "FK_ROUTER_KEY"})
    args = ["serve", "--config", str(config)] if command == "serve" else ["up", str(config)]
    result = run_fusionkit(tmp_path, *args, env={"FK_ROUTER_KEY": ""})
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"error: {config}: {ROUTER_KEY_UNSET}" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / ".fusionkit").exists()  # nothing was started


def test_a_bridge_refuses_an_open_bind_without_a_key_and_a_key_variable_that_is_unset(tmp_path: Path) -> None:
    bridge = ["serve-endpoint", "--id", "m", "--provider", "mock", "--model", "mock-1", "--port", str(free_port())]
    open_bind = run_fusionkit(tmp_path, *bridge, "--host", "0.0.0.0")
    assert open_bind.returncode == 2
    assert "error: refusing to bind 0.0.0.0 without auth: pass --auth-key-env NAME" in open_bind.stderr
    assert "--insecure-no-auth" in open_bind.stderr
    unset = run_fusionkit(tmp_path, *bridge, "--auth-key-env", "FK_BRIDGE_KEY", env={"FK_BRIDGE_KEY": ""})
    assert unset.returncode == 2
    assert "error: --auth-key-env: environment variable FK_BRIDGE_KEY is not set (or is empty)" in unset.stderr
    # The key itself where its variable's name belongs: refused, and never echoed.
    pasted = CliRunner().invoke(cli, [*bridge, "--auth-key-env", "sk-pasted-0d9f"])
    assert pasted.exit_code == 2 and "sk-pasted-0d9f" not in pasted.output
    assert "--auth-key-env: must be the NAME of an environment variable, never the key itself" in pasted.output


def test_a_bridge_with_a_key_guards_its_v1_routes_and_the_router_sends_the_key(
    tmp_path: Path, live_server: Any
) -> None:
    key = "bridge-token-456"
    endpoints = [EndpointConfig.model_validate(e) for e in demo_endpoints()]
    bridges = {e.id: live_server(create_bridge(e, auth_key=key)).url for e in endpoints}
    fast = bridges["fast"]
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {key}"}):
        response = httpx2.get(fast + "/v1/models", headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key", headers
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=fast + "/v1", api_key="wrong", max_retries=0).chat.completions.create(
            model="fast", messages=[{"role": "user", "content": "hi"}]
        )
    assert httpx2.get(fast + "/health").status_code == 200 and httpx2.get(fast + "/v1/health").status_code == 200
    direct = openai.OpenAI(base_url=fast + "/v1", api_key=key, max_retries=0)
    assert direct.chat.completions.create(model="fast", messages=[{"role": "user", "content": "hi"}]).choices

    config = panel_config(tmp_path, demo_endpoints())
    question = [{"role": "user", "content": "compare a and b"}]
    keyed = live_server(create_app(config, clients=build_clients(config, bridges, bridge_key=key)))
    client = openai.OpenAI(base_url=keyed.url + "/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(model="fusionkit/panel", messages=question)
    assert reply.model_extra is not None
    assert reply.model_extra["fusionkit"]["candidate_model_ids"] == ["fast", "careful", "structured"]
    # Without the key every member is refused: the key really is what lets the router in.
    keyless = live_server(create_app(config, clients=build_clients(config, bridges), store_path=tmp_path / "b.db"))
    refused = httpx2.post(keyless.url + "/v1/chat/completions", json={"model": "fusionkit/panel", "messages": question})
    assert refused.status_code == 502 and "missing or invalid API key" in refused.text
