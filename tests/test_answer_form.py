"""The fused answer has the form the client asked for: format, stop sequences, token limit, labels.

The synthesizer writes the client's answer, so it gets the client's `response_format`, `stop`,
`top_p` and `user`; the judge and the verifier write JSON for the engine, so they get a token
budget of their own instead of the client's. The synthesizer here is an OpenAI stand-in, so what
it was sent is what the upstream saw, and it ignores `stop`, as some servers do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
from pydantic import ValidationError

from bridge.protocol import ChatRequest
from server.app import create_app
from server.clients import build_clients
from server.config import PanelConfig
from server.engine import FusionEngine, MemoryRecorder
from server.engine.candidates import Candidate
from server.engine.stops import StopCutter, cut_at_stop
from tests.router_helpers import demo_endpoints, panel_config
from tests.standins.openai_standin import create_openai_standin
from tests.standins.recorder import StandinState

QUESTION = [{"role": "user", "content": "Compare two ways to cache a web page"}]


def _writer_config(tmp_path: Path, upstream_url: str, **settings: Any) -> PanelConfig:
    writer = {"id": "writer", "provider": "openai-compatible", "model": "w", "base_url": upstream_url + "/v1"}
    return panel_config(
        tmp_path,
        [*demo_endpoints(), writer],
        panel_models=["fast", "careful", "structured"],
        judge_model="careful",
        synthesizer_model="writer",
        **settings,
    )


def _client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


def test_the_synthesizer_writes_in_the_form_the_client_asked(tmp_path: Path, live_server: Any) -> None:
    state = StandinState(answer='{"verdict": "cache at the edge"}')
    upstream = live_server(create_openai_standin(state))
    server = live_server(create_app(_writer_config(tmp_path, upstream.url)))
    reply = _client(server).chat.completions.create(
        model="fusionkit/panel",
        messages=QUESTION,
        response_format={"type": "json_object"},
        stop=["NEVER-SEEN"],
        top_p=0.5,
        user="user-42",
    )
    assert reply.model_extra["fusionkit"]["decision"]["reason"] == "judged_and_synthesized"
    (sent,) = state.requests
    assert sent["response_format"] == {"type": "json_object"}
    assert sent["stop"] == ["NEVER-SEEN"] and sent["top_p"] == 0.5 and sent["user"] == "user-42"


@pytest.mark.parametrize("stream", [False, True])
def test_stop_sequences_cut_the_fused_answer_the_client_receives(
    tmp_path: Path, live_server: Any, stream: bool
) -> None:
    state = StandinState(answer="Use a CDN for the answer, then stop. answer more words after it")
    upstream = live_server(create_openai_standin(state))
    server = live_server(create_app(_writer_config(tmp_path, upstream.url)))
    client = _client(server)
    if stream:
        chunks = list(
            client.chat.completions.create(model="fusionkit/panel", messages=QUESTION, stop=["answer"], stream=True)
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
        assert finish == ["stop"]
    else:
        reply = client.chat.completions.create(model="fusionkit/panel", messages=QUESTION, stop=["answer"])
        text = reply.choices[0].message.content or ""
        assert reply.choices[0].finish_reason == "stop"
    assert text == "Use a CDN for the "


def test_a_fused_answer_cut_by_max_tokens_says_length_and_the_judge_keeps_its_own_budget(
    tmp_path: Path, live_server: Any
) -> None:
    state = StandinState(answer="one two three four five six seven eight")
    upstream = live_server(create_openai_standin(state))
    config = _writer_config(tmp_path, upstream.url, sampling={"judge_max_tokens": 3000})
    server = live_server(create_app(config))
    reply = _client(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION, max_tokens=5)
    meta = reply.model_extra["fusionkit"]
    # The mock judge's JSON was not cut to the client's 5 tokens: it parsed, and synthesis used it.
    assert meta["judge_parse_error"] is None
    assert meta["decision"]["reason"] == "judged_and_synthesized"
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == "one two three four five "
    assert state.requests[-1]["max_tokens"] == 5


async def test_a_trajectory_fusion_written_by_mocks_is_labelled_mock(tmp_path: Path) -> None:
    config = panel_config(tmp_path, demo_endpoints())
    clients = build_clients(config)
    engine = FusionEngine(config, clients)
    given = [
        Candidate(candidate_id="t1", endpoint_id="agent-a", model="agent-a", text="final output: patch A"),
        Candidate(candidate_id="t2", endpoint_id="agent-b", model="agent-b", text="final output: patch B"),
    ]
    request = ChatRequest.model_validate({"model": "fusionkit/trajectories", "messages": QUESTION})
    result = await engine.fuse_answers(
        request, given, MemoryRecorder(), judge_id="fast", synth_id="careful", best=lambda c, _: c[0]
    )
    assert result.mock is True  # the judge and the synthesizer were mocks, though no candidate was


def test_the_cost_estimate_is_in_the_configs_currency(tmp_path: Path, live_server: Any) -> None:
    endpoints = demo_endpoints()
    for endpoint in endpoints:
        endpoint["pricing"] = {"input_per_1m_tokens": 1, "output_per_1m_tokens": 2, "currency": "EUR"}
    server = live_server(create_app(panel_config(tmp_path, endpoints)))
    reply = _client(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION)
    cost = reply.model_extra["fusionkit"]["cost_estimate"]
    assert cost["currency"] == "EUR" and cost["amount"] > 0


def test_endpoints_priced_in_two_currencies_are_refused(tmp_path: Path) -> None:
    endpoints = demo_endpoints()
    endpoints[2]["pricing"] = {"currency": "EUR"}
    with pytest.raises(ValidationError, match=r"endpoints\[2\]\.pricing\.currency: found 'EUR'; allowed: 'USD'"):
        panel_config(tmp_path, endpoints)


@pytest.mark.parametrize(
    ("pieces", "stops", "sent"),
    [
        (["Hello EN", "D more"], ["END"], ["Hello ", ""]),
        (["Hello E", "Nough said"], ["END"], ["Hello ", "ENough said"]),
        (["a\n", "\nb"], ["\n\n"], ["a", ""]),
        (["no stops here"], [], ["no stops here"]),
        (["xx", "yy"], ["zz", "y"], ["xx", ""]),
    ],
)
def test_the_stop_cutter_holds_back_only_what_may_start_a_stop(
    pieces: list[str], stops: list[str], sent: list[str]
) -> None:
    cutter = StopCutter(stops)
    out = [cutter.feed(p) for p in pieces]
    assert out == sent
    whole = "".join(pieces)
    assert "".join(out) + cutter.flush() == cut_at_stop(whole, stops)[0]
