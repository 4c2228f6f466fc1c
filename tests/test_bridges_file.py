"""The router follows the bridges file (server/bridges_file.py): as `fusionkit up` starts it beside
bridges that are still starting, and moves a bridge whose automatic port was taken.

Real servers: the router and the bridges run as uvicorn servers on loopback ports, the file is
replaced on disk as `up` replaces it, and the router is driven over HTTP.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bridge.app import create_app as create_bridge
from bridge.endpoint import EndpointConfig
from server.app import create_app
from server.bridges_file import BridgesFile, BridgesFileError
from server.clients import build_clients
from tests.livesrv import LiveServer
from tests.router_helpers import demo_endpoints, panel_config

KEY = "bridge-key-for-this-run"
QUESTION = [{"role": "user", "content": "compare a and b"}]


def publish(path: Path, urls: dict[str, str | None]) -> None:
    """As `up` does: the whole file replaced at once."""
    fresh = path.with_suffix(".new")
    fresh.write_text(json.dumps(urls))
    os.replace(fresh, path)


def ask(router: str, model: str) -> httpx2.Response:
    return httpx2.post(f"{router}/v1/chat/completions", json={"model": model, "messages": QUESTION}, timeout=30)


def test_an_unpublished_bridge_is_not_ready_and_not_called_then_the_router_follows_the_file(
    tmp_path: Path, live_server: Any
) -> None:
    endpoints = {e["id"]: EndpointConfig.model_validate(e) for e in demo_endpoints()}
    path = tmp_path / "bridges.json"
    careful = live_server(create_bridge(endpoints["careful"], auth_key=KEY)).url
    structured = live_server(create_bridge(endpoints["structured"], auth_key=KEY)).url
    publish(path, {"fast": None, "careful": careful, "structured": structured})
    config = panel_config(tmp_path, demo_endpoints())
    clients = build_clients(config, BridgesFile(path, endpoints), bridge_key=KEY)
    router = live_server(create_app(config, clients=clients)).url

    # 'fast' is still starting: not ready, not probed, and a call to it is a 503, not a guess.
    health = httpx2.get(f"{router}/health").json()
    assert health["status"] == "degraded"
    assert health["endpoints"]["fast"] == {"ready": False, "via": "bridge", "state": "starting", "provider": "mock"}
    assert health["endpoints"]["careful"]["ready"] is True
    refused = ask(router, "fast")
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "not_ready", refused.text
    assert "still starting" in refused.json()["error"]["message"]

    # Published at its first port: answered there.
    with LiveServer(create_bridge(endpoints["fast"], auth_key=KEY)) as first:
        publish(path, {"fast": first.url, "careful": careful, "structured": structured})
        assert ask(router, "fast").status_code == 200
        assert httpx2.get(f"{router}/health").json()["endpoints"]["fast"]["url"] == first.url
    # That bridge is gone and the file names another port: the router goes there, at once.
    second = live_server(create_bridge(endpoints["fast"], auth_key=KEY)).url
    publish(path, {"fast": second, "careful": careful, "structured": structured})
    answer = ask(router, "fast")
    assert answer.status_code == 200, answer.text
    health = httpx2.get(f"{router}/health").json()
    assert health["status"] == "ok" and health["endpoints"]["fast"]["url"] == second
    panel = ask(router, "fusionkit/panel")
    assert panel.status_code == 200 and panel.json()["fusionkit"]["failed_members"] == []


def test_an_endpoint_the_file_does_not_name_is_called_in_process(tmp_path: Path, live_server: Any) -> None:
    path = tmp_path / "bridges.json"
    publish(path, {"fast": None})
    config = panel_config(tmp_path, demo_endpoints())
    router = live_server(create_app(config, clients=build_clients(config, BridgesFile(path, ["fast", "careful"])))).url
    assert httpx2.get(f"{router}/health").json()["endpoints"]["careful"]["via"] == "in-process"
    assert ask(router, "careful").status_code == 200


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{", "cannot read the bridges file"),
        ('["http://127.0.0.1:1"]', "must be a JSON object mapping endpoint ids to URLs (or null)"),
        ('{"fast": 8080}', "must be a JSON object mapping endpoint ids to URLs (or null)"),
        ('{"slow": null}', "unknown endpoint ids ['slow']; allowed: fast, careful"),
    ],
)
def test_a_bad_bridges_file_is_refused_at_start(tmp_path: Path, text: str, says: str) -> None:
    path = tmp_path / "bridges.json"
    path.write_text(text)
    with pytest.raises(BridgesFileError) as refused:
        BridgesFile(path, ["fast", "careful"])
    assert str(refused.value).startswith(f"{path}: {says}")


def test_a_bad_rewrite_keeps_what_the_file_said_before_and_says_so_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "bridges.json"
    publish(path, {"fast": "http://127.0.0.1:4001/"})
    bridges = BridgesFile(path, ["fast"])
    assert bridges.url("fast") == "http://127.0.0.1:4001"
    publish(path, {"fast": 4002})  # type: ignore[dict-item]
    with caplog.at_level(logging.WARNING, logger="fusionkit.router"):
        assert bridges.url("fast") == "http://127.0.0.1:4001"
        assert bridges.url("fast") == "http://127.0.0.1:4001"
    assert [r.getMessage() for r in caplog.records] == [
        f"{path}: must be a JSON object mapping endpoint ids to URLs (or null); keeping the bridges it named before"
    ]
    publish(path, {"fast": "http://127.0.0.1:4003"})
    assert bridges.url("fast") == "http://127.0.0.1:4003"
