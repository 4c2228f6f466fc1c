"""fusionkit 0.10's names for the router mode: mode `heuristic` and model `fusionkit/heuristic`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx2
import openai

from server.app import create_app
from tests.router_helpers import demo_endpoints, panel_config

QUESTION = [{"role": "user", "content": "Hi there"}]


def test_heuristic_is_the_router_mode_everywhere(tmp_path: Path, live_server: Any) -> None:
    # Without the aliases each of these is refused (404 unknown model, 400/422 unknown mode).
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints(), default_mode="router")))
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
    by_model = client.chat.completions.create(model="fusionkit/heuristic", messages=QUESTION)  # type: ignore[arg-type]
    assert by_model.model_extra is not None and by_model.model_extra["fusionkit"]["mode"] == "router"
    by_mode = httpx2.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "fusionkit/panel", "messages": QUESTION, "fusion": {"mode": "heuristic"}},
    ).json()
    assert by_mode["fusionkit"]["mode"] == "router"
    run = httpx2.post(f"{server.url}/v1/fusion/runs", json={"messages": QUESTION, "mode": "heuristic"}).json()
    assert run["state"] == "completed" and run["inspection"]["fusionkit"]["mode"] == "router"
    bad = httpx2.post(f"{server.url}/v1/fusion/runs", json={"messages": QUESTION, "mode": "guess"})
    assert bad.status_code == 422 and bad.json()["error"]["param"] == "mode"
