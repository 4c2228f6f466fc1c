"""The router end to end over in-process mock endpoints: modes, failures, budgets, recording.

Every test starts the real router app on a free port and talks to it with the official openai
client; what the run did is read back from the run store the router wrote.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from server.app import create_app
from server.store import RunStore
from tests.router_helpers import demo_endpoints, mock_endpoint, panel_config
from tests.standins.openai_standin import create_openai_standin
from tests.standins.recorder import StandinState

QUESTION = [{"role": "user", "content": "Should I compare Postgres and SQLite for a small web app?"}]


def client_for(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


async def run_events(store_path: Path, run_id: str) -> list[Any]:
    store = RunStore(store_path)
    try:
        return await store.events(run_id, after=0, limit=1000)
    finally:
        await store.close()


def events_of(tmp_path: Path, run_id: str) -> list[Any]:
    return asyncio.run(run_events(tmp_path / "runs.sqlite3", run_id))


def test_panel_answer_carries_metadata_and_summed_usage(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints(), judge_model="careful")))
    reply = client_for(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION)

    meta = reply.model_extra["fusionkit"]
    assert meta["mode"] == "panel" and meta["state"] == "completed" and meta["status"] == "succeeded"
    assert meta["candidate_model_ids"] == ["fast", "careful", "structured"]
    assert meta["decision"]["type"] == "synthesize"
    assert meta["judge_model_id"] == "careful" and meta["judge_parse_error"] is None
    assert meta["mock"] is True
    assert {"panel", "judge", "synthesis", "total"} <= set(meta["latency_ms"])
    assert "Fused answer drawing on c1, c2, c3" in reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"

    events = events_of(tmp_path, meta["run_id"])
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert meta["event_cursor"] == events[-1].seq
    completed = [e.payload for e in events if e.type == "model_call.completed"]
    assert sorted(p["role"] for p in completed) == ["judge", "panel", "panel", "panel", "synthesizer"]
    # Usage is the sum over all five calls, not just the synthesizer's.
    total = sum(p["usage"]["total_tokens"] for p in completed)
    assert reply.usage.total_tokens == total
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streaming_sends_tokens_while_the_synthesizer_is_still_writing(tmp_path: Path, live_server: Any) -> None:
    # The synthesizer ("careful") paces its tokens at 40/s; the panel members answer at once.
    endpoints = demo_endpoints(careful={"tokens_per_s": 40})
    config = panel_config(tmp_path, endpoints, judge_model="fast", synthesizer_model="careful")
    server = live_server(create_app(config))
    store_path = tmp_path / "runs.sqlite3"
    text: list[str] = []
    chunks = []
    synth_done_at_first_token = None
    with client_for(server).chat.completions.with_streaming_response.create(
        model="fusionkit/panel", messages=QUESTION, stream=True, stream_options={"include_usage": True}
    ) as response:
        run_id = response.headers["x-fusion-run-id"]
        for chunk in response.parse():
            chunks.append(chunk)
            if chunk.choices and chunk.choices[0].delta.content:
                if synth_done_at_first_token is None:
                    events = asyncio.run(run_events(store_path, run_id))
                    synth_done_at_first_token = any(
                        e.type == "model_call.completed" and e.payload["role"] == "synthesizer" for e in events
                    )
                text.append(chunk.choices[0].delta.content)

    # The first token reached us before the synthesizer's call had completed: real streaming.
    assert synth_done_at_first_token is False
    final = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(final) == 1 and final[0].choices[0].finish_reason == "stop"
    assert final[0].model_extra["fusionkit"]["run_id"] == run_id
    assert "Fused answer drawing on" in "".join(text)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert len({c.id for c in chunks}) == 1
    events = asyncio.run(run_events(store_path, run_id))
    assert events[-1].type == "run.state" and events[-1].payload["state"] == "completed"


def test_one_member_failing_and_one_timing_out_are_dropped_with_reasons(tmp_path: Path, live_server: Any) -> None:
    endpoints = demo_endpoints(fast={"fail_rate": 1.0}, structured={"latency_ms": 5000})
    config = panel_config(tmp_path, endpoints, judge_model="careful", panel={"member_timeout_s": 0.3})
    server = live_server(create_app(config))
    reply = client_for(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION)

    meta = reply.model_extra["fusionkit"]
    assert meta["candidate_model_ids"] == ["careful"]
    failed = {f["endpoint_id"]: f for f in meta["failed_members"]}
    assert set(failed) == {"fast", "structured"}
    assert "failed on purpose" in failed["fast"]["reason"] and failed["fast"]["status"] == 502
    assert "timed out" in failed["structured"]["reason"]
    # One candidate left: it is the answer, without a judge.
    assert meta["decision"] == {
        "type": "select_candidate",
        "reason": "only_one_candidate",
        "selected_candidate_id": "c2",
    }


def test_all_members_failing_is_a_502_naming_each_reason(tmp_path: Path, live_server: Any) -> None:
    endpoints = demo_endpoints(**{n: {"fail_rate": 1.0} for n in ("fast", "careful", "structured")})
    server = live_server(create_app(panel_config(tmp_path, endpoints)))
    with pytest.raises(openai.InternalServerError) as caught:
        client_for(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION)
    assert caught.value.status_code == 502
    message = caught.value.body["message"]  # type: ignore[index]
    for name in ("fast (c1)", "careful (c2)", "structured (c3)"):
        assert name in message


def test_min_successful_is_enforced(tmp_path: Path, live_server: Any) -> None:
    endpoints = demo_endpoints(fast={"fail_rate": 1.0})
    server = live_server(create_app(panel_config(tmp_path, endpoints, panel={"min_successful": 3})))
    with pytest.raises(openai.InternalServerError, match="2 of 3 panel members answered, 3 needed"):
        client_for(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION)


def test_unanimous_candidates_skip_judge_and_synthesizer(tmp_path: Path, live_server: Any) -> None:
    # Two endpoints running the same mock model with the same seed answer identically.
    endpoints = [mock_endpoint("a", "mock-same", seed=7), mock_endpoint("b", "mock-same", seed=7)]
    server = live_server(create_app(panel_config(tmp_path, endpoints)))
    reply = client_for(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION)

    meta = reply.model_extra["fusionkit"]
    assert meta["decision"] == {"type": "select_candidate", "reason": "unanimous", "selected_candidate_id": "c1"}
    roles = [e.payload["role"] for e in events_of(tmp_path, meta["run_id"]) if e.type == "model_call.started"]
    assert roles == ["panel", "panel"]


def _standin_judge_config(tmp_path: Path, url: str) -> Any:
    judge = {"id": "judge", "provider": "openai-compatible", "model": "j", "base_url": url + "/v1"}
    return panel_config(
        tmp_path, [*demo_endpoints(), judge], panel_models=["fast", "careful", "structured"], judge_model="judge"
    )


def test_judge_reply_that_is_not_json_is_recorded_and_synthesis_goes_on(tmp_path: Path, live_server: Any) -> None:
    upstream = live_server(create_openai_standin(StandinState(answer="I would pick c2, it reads best.")))
    server = live_server(create_app(_standin_judge_config(tmp_path, upstream.url)))
    reply = client_for(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION)

    meta = reply.model_extra["fusionkit"]
    assert meta["judge_parse_error"] is not None and "JSON" in meta["judge_parse_error"]
    assert meta["decision"]["type"] == "synthesize"
    judge = next(e.payload for e in events_of(tmp_path, meta["run_id"]) if e.type == "judge.record")
    assert judge["analysis"] is None and judge["raw_artifact_sha256"]


def test_a_fenced_judge_reply_with_prose_around_it_is_parsed(tmp_path: Path, live_server: Any) -> None:
    analysis = '{"consensus": ["both cache"], "ranking": ["c3", "c1", "c2"], "best_candidate_id": "c3"}'
    fenced = f"Here is my analysis:\n```json\n{analysis}\n```\nI hope this helps."
    upstream = live_server(create_openai_standin(StandinState(answer=fenced)))
    server = live_server(create_app(_standin_judge_config(tmp_path, upstream.url)))
    reply = client_for(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION)
    meta = reply.model_extra["fusionkit"]
    assert meta["judge_parse_error"] is None
    assert meta["decision"] == {
        "type": "synthesize",
        "reason": "judged_and_synthesized",
        "selected_candidate_id": "c3",
    }


def test_verify_adds_a_verifier_pass(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    reply = client_for(server).chat.completions.create(
        model="fusionkit/panel", messages=QUESTION, extra_body={"fusion": {"verify": True}}
    )
    meta = reply.model_extra["fusionkit"]
    assert meta["verification"]["passed"] is True
    assert "verify" in meta["latency_ms"]
    states = [e.payload["state"] for e in events_of(tmp_path, meta["run_id"]) if e.type == "run.state"]
    assert states == ["generating", "judging", "synthesizing", "verifying", "completed"]


def test_budget_max_candidates_refuses_before_any_call(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints(), budget={"max_candidates": 2})))
    with pytest.raises(openai.BadRequestError) as caught:
        client_for(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION)
    assert caught.value.body["code"] == "budget_exceeded"  # type: ignore[index]


def test_budget_wall_clock_cancels_the_run(tmp_path: Path, live_server: Any) -> None:
    endpoints = demo_endpoints(structured={"latency_ms": 5000})
    server = live_server(create_app(panel_config(tmp_path, endpoints, budget={"wall_clock_s": 0.5})))
    with pytest.raises(openai.APIStatusError) as caught:
        client_for(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION)
    assert caught.value.status_code == 504
    assert "wall_clock_s" in caught.value.body["message"]  # type: ignore[index]


def test_budget_max_cost_stops_spending_after_the_panel(tmp_path: Path, live_server: Any) -> None:
    endpoints = demo_endpoints()
    for endpoint in endpoints:
        endpoint["pricing"] = {"input_per_1m_tokens": 1000.0, "output_per_1m_tokens": 1000.0}
    server = live_server(create_app(panel_config(tmp_path, endpoints, budget={"max_cost": 0.0001})))
    reply = client_for(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION)
    meta = reply.model_extra["fusionkit"]
    assert meta["decision"]["reason"] == "budget_max_cost"
    assert meta["cost_estimate"]["amount"] > 0.0001 and meta["cost_estimate"]["complete"] is True
    roles = [e.payload["role"] for e in events_of(tmp_path, meta["run_id"]) if e.type == "model_call.started"]
    assert "judge" not in roles and "synthesizer" not in roles


@pytest.mark.parametrize(
    ("prompt", "route"),
    [
        ("Hi there", "single"),
        ("Compute the number of distinct paths in a 4x4 grid step by step", "self"),
        ("What are the trade-offs between microservices and a monolith for our team?", "panel"),
    ],
)
@pytest.mark.parametrize("default_mode", ["router", "panel", "single"])
def test_router_mode_picks_a_route_and_says_why(
    tmp_path: Path, live_server: Any, prompt: str, route: str, default_mode: str
) -> None:
    # The model suffix decides the mode whatever the config's default_mode (SPEC §5).
    config = panel_config(tmp_path, demo_endpoints(), default_mode=default_mode, sample_count=3)
    server = live_server(create_app(config))
    reply = client_for(server).chat.completions.create(
        model="fusionkit/router", messages=[{"role": "user", "content": prompt}]
    )
    meta = reply.model_extra["fusionkit"]
    assert meta["mode"] == "router" and meta["route"] == route and meta["route_reasons"]
    expected = {"single": 1, "self": 3, "panel": 3}[route]
    assert meta["candidate_count"] == expected


@pytest.mark.parametrize("model", [None, "fusionkit/heuristic"])
def test_a_request_without_a_model_or_with_the_0_10_alias_asks_the_router(
    tmp_path: Path, live_server: Any, model: str | None
) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints(), default_mode="panel")))
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "Hi there"}]}
    if model is not None:
        body["model"] = model
    reply = httpx2.post(server.url + "/v1/chat/completions", json=body)
    assert reply.status_code == 200, reply.text
    meta = reply.json()["fusionkit"]
    assert (meta["mode"], meta["route"], meta["candidate_count"]) == ("router", "single", 1)


def test_self_mode_samples_the_default_model_at_each_temperature(tmp_path: Path, live_server: Any) -> None:
    # The default model is a stand-in, so what each sample was sent is what the upstream saw.
    state = StandinState()
    upstream = live_server(create_openai_standin(state))
    sampled = {"id": "sampled", "provider": "openai-compatible", "model": "m", "base_url": upstream.url + "/v1"}
    config = panel_config(
        tmp_path,
        [sampled, *demo_endpoints()],
        sample_count=3,
        self_temperatures=[0.1, 0.5, 0.9],
        judge_model="careful",
        sampling={"seed": 40},
    )
    server = live_server(create_app(config))
    reply = client_for(server).chat.completions.create(model="fusionkit/self", messages=QUESTION)
    meta = reply.model_extra["fusionkit"]
    assert meta["candidate_model_ids"] == ["sampled", "sampled", "sampled"]
    assert meta["decision"]["reason"] == "unanimous"  # the stand-in echoes: three identical samples
    sent = sorted((r["temperature"], r["seed"]) for r in state.requests)
    assert sent == [(0.1, 40), (0.5, 41), (0.9, 42)]


def test_single_mode_and_endpoint_ids_answer_directly(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    client = client_for(server)
    single = client.chat.completions.create(model="fusionkit/single", messages=QUESTION)
    assert single.model_extra["fusionkit"]["candidate_model_ids"] == ["fast"]
    direct = client.chat.completions.create(model="structured", messages=QUESTION)
    assert direct.model_extra["fusionkit"]["candidate_model_ids"] == ["structured"]
    assert "mock-structured" in direct.choices[0].message.content
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="fusionkit/single", messages=QUESTION, stream=True)
        if c.choices
    )
    assert streamed == single.choices[0].message.content


def test_models_and_health(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    ids = [m.id for m in client_for(server).models.list()]
    assert ids == [
        "fusionkit/router",
        "fusionkit/single",
        "fusionkit/self",
        "fusionkit/panel",
        "fast",
        "careful",
        "structured",
    ]
    health = httpx2.get(server.url + "/health").json()
    assert health["status"] == "ok"
    assert all(e["ready"] for e in health["endpoints"].values())


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"model": "fusionkit/panel", "messages": QUESTION, "n": 2}, 400, "unsupported_n"),
        ({"model": "nope", "messages": QUESTION}, 404, "model_not_found"),
        ({"model": "fusionkit/panel", "messages": QUESTION, "fusion": {"mode": "party"}}, 400, "invalid_request"),
        (
            {"model": "fusionkit/panel", "messages": QUESTION, "fusion": {"panel_models": ["ghost"]}},
            400,
            "unknown_endpoint",
        ),
        ({"model": "fusionkit/panel", "messages": [{"role": "wizard", "content": "x"}]}, 400, "invalid_request"),
        ({"model": "fusionkit/panel", "messages": []}, 400, "invalid_request"),
    ],
)
def test_bad_requests_answer_in_the_openai_error_shape(
    tmp_path: Path, live_server: Any, body: dict[str, Any], status: int, code: str
) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints())))
    response = httpx2.post(server.url + "/v1/chat/completions", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and "type" in error and "param" in error


def test_concurrent_completions_each_get_their_own_complete_run(tmp_path: Path, live_server: Any) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints(fast={"latency_ms": 20}))))

    async def ask_all() -> list[Any]:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)
        questions = [[{"role": "user", "content": f"Question number {i}: compare A and B"}] for i in range(16)]
        return await asyncio.gather(
            *(client.chat.completions.create(model="fusionkit/panel", messages=q) for q in questions)
        )

    replies = asyncio.run(ask_all())
    run_ids = {r.model_extra["fusionkit"]["run_id"] for r in replies}
    assert len(run_ids) == 16
    for run_id in run_ids:
        events = events_of(tmp_path, run_id)
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        assert sum(1 for e in events if e.type == "model_call.completed") == 5
        assert events[-1].payload["state"] == "completed"


def test_a_failing_judge_degrades_to_synthesis_without_analysis(tmp_path: Path, live_server: Any) -> None:
    endpoints = [*demo_endpoints(), mock_endpoint("broken", fail_rate=1.0)]
    config = panel_config(
        tmp_path,
        endpoints,
        panel_models=["fast", "careful", "structured"],
        judge_model="broken",
        synthesizer_model="careful",
    )
    server = live_server(create_app(config))
    reply = client_for(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION)
    meta = reply.model_extra["fusionkit"]
    assert meta["judge_parse_error"].startswith("the judge call failed")
    assert meta["decision"]["type"] == "synthesize"
    assert "Fused answer drawing on c1, c2, c3" in reply.choices[0].message.content


def test_a_failing_synthesizer_falls_back_to_the_best_candidate(tmp_path: Path, live_server: Any) -> None:
    endpoints = [*demo_endpoints(), mock_endpoint("broken", fail_rate=1.0)]
    config = panel_config(
        tmp_path,
        endpoints,
        panel_models=["fast", "careful", "structured"],
        judge_model="careful",
        synthesizer_model="broken",
    )
    server = live_server(create_app(config))
    reply = client_for(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION)
    meta = reply.model_extra["fusionkit"]
    assert meta["decision"]["type"] == "select_candidate"
    assert meta["decision"]["reason"] == "synthesizer_failed"
    chosen = meta["decision"]["selected_candidate_id"]
    assert chosen in ("c1", "c2", "c3")
    events = events_of(tmp_path, meta["run_id"])
    ranking = next(e.payload for e in events if e.type == "judge.record")["analysis"]["ranking"]
    assert chosen == ranking[0]
