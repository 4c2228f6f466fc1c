"""Upstream faults: every one ends in the right status and reason, and nothing hangs past its deadline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from bridge.app import create_app as create_bridge
from bridge.endpoint import EndpointConfig
from server.app import create_app as create_router
from tests.livesrv import free_port
from tests.router_helpers import demo_endpoints, panel_config
from tests.standins.openai_standin import create_openai_standin
from tests.standins.recorder import StandinState

ASK = [{"role": "user", "content": "compare two things"}]
ERROR = {"error": {"message": "boom", "type": "server_error", "param": None, "code": None}}


def bridge_client(live_server: Any, state: StandinState, timeout_s: float = 30) -> openai.OpenAI:
    upstream = live_server(create_openai_standin(state))
    endpoint = EndpointConfig(
        id="up", provider="openai-compatible", model="m", base_url=upstream.url + "/v1", timeout_s=timeout_s
    )
    return openai.OpenAI(base_url=live_server(create_bridge(endpoint)).url + "/v1", api_key="x", max_retries=0)


def test_malformed_upstream_json_is_a_502(live_server: Any) -> None:
    client = bridge_client(live_server, StandinState(stream_fault="malformed_json"))
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="up", messages=ASK)
    assert caught.value.status_code == 502 and "malformed" in caught.value.body["message"]


def test_an_upstream_that_never_answers_times_out_with_504(live_server: Any) -> None:
    client = bridge_client(live_server, StandinState(delay_s=30), timeout_s=0.5)
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="up", messages=ASK)
    assert caught.value.status_code == 504 and caught.value.body["code"] == "upstream_timeout"


def router_over(tmp_path: Path, live_server: Any, state: StandinState, **settings: Any) -> openai.OpenAI:
    upstream = live_server(create_openai_standin(state))
    endpoints = [
        *demo_endpoints(),
        {
            "id": "remote",
            "provider": "openai-compatible",
            "model": "m",
            "base_url": upstream.url + "/v1",
            "timeout_s": 5,
        },
    ]
    config = panel_config(tmp_path, endpoints, judge_model="careful", **settings)
    return openai.OpenAI(base_url=live_server(create_router(config)).url + "/v1", api_key="x", max_retries=0)


def test_a_burst_of_500s_is_retried_within_the_run(tmp_path: Path, live_server: Any) -> None:
    state = StandinState()
    state.fail_next(500, ERROR, times=2)
    client = router_over(tmp_path, live_server, state)
    reply = client.chat.completions.create(model="fusionkit/panel", messages=ASK)
    meta = reply.model_extra["fusionkit"]
    assert "remote" in meta["candidate_model_ids"] and meta["failed_members"] == []
    assert len(state.requests) == 3  # two failures, then the answer


def test_429_retry_after_is_honoured_within_the_deadline(tmp_path: Path, live_server: Any) -> None:
    state = StandinState()
    state.fail_next(429, ERROR, headers={"Retry-After": "0.2"})
    client = router_over(tmp_path, live_server, state, panel={"member_timeout_s": 2})
    reply = client.chat.completions.create(model="remote", messages=ASK)
    assert reply.choices[0].message.content == "echo: compare two things" and len(state.requests) == 2
    # A Retry-After longer than the member's time left (member_timeout_s) is not waited for: the
    # member fails at once with the 429.
    state.fail_next(429, ERROR, headers={"Retry-After": "30"})
    panel = client.chat.completions.create(
        model="fusionkit/panel", messages=ASK, extra_body={"fusion": {"panel_models": ["fast", "remote"]}}
    )
    failed = panel.model_extra["fusionkit"]["failed_members"]
    assert [(f["endpoint_id"], f["status"]) for f in failed] == [("remote", 429)]


def test_refused_connection_and_broken_streams_degrade_the_panel(tmp_path: Path, live_server: Any) -> None:
    endpoints = [
        *demo_endpoints(),
        {"id": "gone", "provider": "openai-compatible", "model": "m", "base_url": f"http://127.0.0.1:{free_port()}/v1"},
    ]
    config = panel_config(tmp_path, endpoints, judge_model="careful")
    client = openai.OpenAI(base_url=live_server(create_router(config)).url + "/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(model="fusionkit/panel", messages=ASK)
    failed = reply.model_extra["fusionkit"]["failed_members"]
    assert [f["endpoint_id"] for f in failed] == ["gone"] and "cannot reach upstream" in failed[0]["reason"]


@pytest.mark.parametrize("fault", ["error_frame", "truncate"])
def test_a_synthesizer_stream_that_breaks_ends_in_an_error_frame(tmp_path: Path, live_server: Any, fault: str) -> None:
    state = StandinState(stream_fault=fault, answer="one two three four five six")
    client = router_over(
        tmp_path, live_server, state, synthesizer_model="remote", panel_models=["fast", "careful", "structured"]
    )
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="fusionkit/panel", messages=ASK, stream=True))
