"""Both servers' OpenAPI documents are true: schemathesis drives every route from `/openapi.json` and checks
each answer against it (status, content type, headers, body schema), on a real bridge and a real router.

Also the document's declarations themselves (request bodies, error statuses, SSE), the 405's `Allow`, and
the bugs the fuzzing found.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bridge.app import create_app as create_bridge
from bridge.endpoint import EndpointConfig
from server.app import create_app as create_router
from tests.livesrv import LiveServer
from tests.router_helpers import mock_endpoint, panel_config

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
# Bounded so that both servers take well under a minute on CI's two cores; the seed makes a failure replayable.
EXAMPLES = "4"
SEED = "1"
# `positive_data_acceptance` expects every request the schema allows to be answered 2xx (or 401/403/404/409/429).
# The OpenAI, Anthropic and seed formats have rules JSON Schema does not carry, which these servers answer
# with 400 or 422 on purpose, as the real APIs do: a `tool` message needs `tool_call_id`, `tool_choice` needs
# `tools`, `stream_options` needs `stream`, `n` must be 1, `judge_model` must name an endpoint of the config.
# Every other check (`--checks all` less this one) runs: server errors, undocumented statuses, content types,
# headers, response schemas, rejection of invalid data, `Allow` on 405, unsupported methods.
EXCLUDED = "positive_data_acceptance"


@pytest.fixture
def bridge() -> Any:
    with LiveServer(create_bridge(EndpointConfig(id="m", provider="mock", model="mock-1"))) as server:
        yield server


@pytest.fixture
def router(tmp_path: Path) -> Any:
    config = panel_config(tmp_path, [mock_endpoint("fast", seed=1), mock_endpoint("careful", seed=2)])
    with LiveServer(create_router(config, keepalive_s=0.5)) as server:
        yield server


def run_schemathesis(url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{url}/openapi.json",
            "--checks",
            "all",
            "--exclude-checks",
            EXCLUDED,
            "--max-examples",
            EXAMPLES,
            "--seed",
            SEED,
            "--no-shrink",
            "--workers",
            "1",
            "--request-timeout",
            "20",
            "--report-dir",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        timeout=170,
        cwd=tmp_path,
        check=False,
    )


@pytest.mark.slow
def test_bridge_answers_as_its_openapi_document_says(bridge: LiveServer, tmp_path: Path) -> None:
    result = run_schemathesis(bridge.url, tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Tested: 5" in result.stdout  # every operation was driven, not skipped


@pytest.mark.slow
def test_router_answers_as_its_openapi_document_says(router: LiveServer, tmp_path: Path) -> None:
    result = run_schemathesis(router.url, tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Tested: 19" in result.stdout


def test_router_document_declares_bodies_statuses_and_streams(router: LiveServer) -> None:
    doc = httpx2.get(router.url + "/openapi.json").json()
    paths = doc["paths"]

    def body_of(path: str) -> str:
        return paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]

    assert body_of("/v1/chat/completions").endswith("/FusionChatRequest")
    assert body_of("/v1/fusion/runs").endswith("/FusionRunRequest")
    assert body_of("/v1/fusion/runs/{run_id}/tool-results").endswith("/ToolResultSubmission")
    assert body_of("/v1/fusion/runs/{run_id}/rejudge").endswith("/RejudgeRequest")
    assert body_of("/v1/responses").endswith("/ResponsesRequest")
    assert body_of("/v1/messages").endswith("/MessagesRequest")
    assert body_of("/v1/fusion/trajectories:fuse").endswith("/FuseTrajectoriesRequest")
    assert body_of("/v1/fusion/trajectory:step").endswith("/StepTrajectoriesRequest")

    chat = paths["/v1/chat/completions"]["post"]["responses"]
    assert chat["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/FusedChatCompletion")
    assert "text/event-stream" in chat["200"]["content"]
    assert {"400", "404", "413"} <= set(chat)
    assert chat["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")

    runs = paths["/v1/fusion/runs"]["post"]["responses"]
    assert {"200", "202", "409", "422"} <= set(runs)
    assert runs["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/NativeErrorResponse")
    messages = paths["/v1/messages"]["post"]["responses"]
    assert messages["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/AnthropicError")
    # OpenAI routes answer a bad parameter with 400: FastAPI's default 422 would be a lie there.
    assert "422" not in paths["/v1/models/{model_id}"]["get"]["responses"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_declaring_bodies_keeps_what_routes_accept(bridge: LiveServer) -> None:
    """Our parser reads the body, not FastAPI's: JSON sent as a form (`curl -d`) is still read, and a
    body that is not JSON is the same 400 as before."""
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    sent_as_form = httpx2.post(
        bridge.url + "/v1/chat/completions",
        content=body,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert sent_as_form.status_code == 200, sent_as_form.text
    broken = httpx2.post(bridge.url + "/v1/chat/completions", content=b"{nope")
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"


def test_405_lists_every_method_of_the_path(router: LiveServer) -> None:
    # /v1/fusion/runs is two routes (POST creates, GET lists): Starlette alone named only the first.
    answer = httpx2.request("DELETE", router.url + "/v1/fusion/runs")
    assert answer.status_code == 405
    assert set(answer.headers["allow"].split(", ")) == {"GET", "POST"}


def test_fusing_trajectories_without_messages_is_a_422_not_a_500(router: LiveServer) -> None:
    trajectory = {"trajectory_id": "t", "model_id": "m", "status": "succeeded", "final_output": "x"}
    answer = httpx2.post(
        router.url + "/v1/fusion/trajectories:fuse", json={"messages": [], "trajectories": [trajectory]}
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["param"] == "messages"
