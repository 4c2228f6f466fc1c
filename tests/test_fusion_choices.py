"""What the answer is made of (issue 17): structured output guaranteed, select-best and auto, tool calls
adopted whole, the agent's own system prompt kept first, and the reasoning a client can ask to see.

Members, judges and synthesizers are OpenAI stand-ins told what to answer, so each test sets up the
case it is about (a member whose JSON is wrong, a judge that finds one candidate clearly best) and
reads back what each model was sent and what the client got.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from server.app import create_app
from server.engine import FusionEngine, MemoryRecorder, Reasoning, TextDelta
from server.engine.events import EngineEvent
from server.protocol.chat import FusionOptions
from tests.router_helpers import demo_endpoints, panel_config
from tests.standins.openai_standin import create_openai_standin
from tests.standins.recorder import StandinState
from tests.test_engine import ANALYSIS, Scripted, ask, engine_of

QUESTION = [{"role": "user", "content": "Give me a recipe"}]
RECIPE = {
    "type": "json_schema",
    "json_schema": {
        "name": "recipe",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"title": {"type": "string"}, "minutes": {"type": "integer", "minimum": 1}},
            "required": ["title", "minutes"],
            "additionalProperties": False,
        },
    },
}
GOOD = '{"title": "soup", "minutes": 20}'
STEW_90 = '{"title": "stew", "minutes": 90}'  # another answer in the asked-for JSON


def _standins(live_server: Any, **answers: StandinState) -> list[dict[str, Any]]:
    endpoints = []
    for name, state in answers.items():
        upstream = live_server(create_openai_standin(state))
        endpoints.append({"id": name, "provider": "openai-compatible", "model": name, "base_url": upstream.url + "/v1"})
    return endpoints


def _writer_panel(tmp_path: Path, live_server: Any, a: StandinState, b: StandinState, writer: StandinState) -> Any:
    """A router over members a and b, the demo's careful mock as judge and `writer` as synthesizer."""
    endpoints = _standins(live_server, a=a, b=b, writer=writer)
    config = panel_config(
        tmp_path,
        [*endpoints, *demo_endpoints()],
        panel_models=["a", "b"],
        judge_model="careful",
        synthesizer_model="writer",
    )
    return live_server(create_app(config))


def _client(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0)


def _roles(tmp_path: Path, run_id: str) -> list[str]:
    from tests.test_router_fusion import events_of

    return [e.payload["role"] for e in events_of(tmp_path, run_id) if e.type == "model_call.started"]


# -- structured output -------------------------------------------------------------------------


def test_a_schema_only_one_member_satisfies_gives_that_members_answer(tmp_path: Path, live_server: Any) -> None:
    judge = StandinState(answer='{"ranking": ["c1", "c2", "c3"], "best_candidate_id": "c1"}')
    writer = StandinState(answer="Here is a recipe: soup.")  # never JSON, not even when asked to repair
    endpoints = _standins(
        live_server,
        a=StandinState(answer="not json at all"),
        b=StandinState(answer=GOOD),
        c=StandinState(answer='{"title": "soup", "minutes": 20, "extra": true}'),  # additionalProperties: false
        judge=judge,
        writer=writer,
    )
    config = panel_config(
        tmp_path, endpoints, panel_models=["a", "b", "c"], judge_model="judge", synthesizer_model="writer"
    )
    server = live_server(create_app(config))
    reply = _client(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION, response_format=RECIPE)

    assert json.loads(reply.choices[0].message.content or "") == json.loads(GOOD)
    meta = reply.model_extra["fusionkit"]
    assert meta["decision"]["reason"] == "schema_fallback" and meta["decision"]["selected_candidate_id"] == "c2"
    assert [f["code"] for f in meta["failures"]] == ["schema_unsatisfied"]
    # The judge was told, outside the fences, which candidates are not the JSON asked for.
    judged = judge.requests[0]["messages"][-1]["content"]
    assert "c1 does not give the JSON the user asked for: not valid JSON" in judged
    assert "c3 does not give the JSON the user asked for" in judged and "Additional properties" in judged
    assert "c2 does not give" not in judged
    # The synthesizer wrote, was shown what was wrong once, and failed again.
    assert (
        len(writer.requests) == 2
        and "Reply with the corrected JSON only" in writer.requests[1]["messages"][-1]["content"]
    )


def test_a_synthesis_that_is_not_the_json_is_repaired_once(tmp_path: Path, live_server: Any) -> None:
    writer = StandinState(answers=['{"title": "soup"}', GOOD])  # minutes missing, then right
    server = _writer_panel(
        tmp_path, live_server, StandinState(answer=GOOD), StandinState(answer=STEW_90), writer
    )
    reply = _client(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION, response_format=RECIPE)
    assert reply.choices[0].message.content == GOOD
    assert reply.model_extra["fusionkit"]["decision"]["reason"] == "judged_and_synthesized_repaired"
    repair = writer.requests[1]["messages"][-1]["content"]
    assert "'minutes' is a required property" in repair


def test_when_no_answer_is_the_json_the_run_fails_with_schema_unsatisfied(tmp_path: Path, live_server: Any) -> None:
    server = _writer_panel(
        tmp_path, live_server, StandinState(answer="no"), StandinState(answer="nope"), StandinState(answer="still no")
    )
    answer = httpx2.post(
        server.url + "/v1/chat/completions",
        json={"model": "fusionkit/panel", "messages": QUESTION, "response_format": RECIPE},
    )
    assert answer.status_code == 502
    error = answer.json()["error"]
    assert error["code"] == "schema_unsatisfied" and set(error["schema_errors"]) == {"c1", "c2"}


def test_a_structured_stream_sends_only_the_checked_answer(tmp_path: Path, live_server: Any) -> None:
    writer = StandinState(answers=["I think { broken", GOOD])
    server = _writer_panel(
        tmp_path, live_server, StandinState(answer=GOOD), StandinState(answer=STEW_90), writer
    )
    chunks = list(
        _client(server).chat.completions.create(
            model="fusionkit/panel", messages=QUESTION, response_format=RECIPE, stream=True
        )
    )
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert texts == [GOOD]  # the broken first synthesis never reached the client


@pytest.mark.parametrize("stream", [False, True])
def test_a_schema_that_is_not_one_is_the_clients_400_before_any_call(
    tmp_path: Path, live_server: Any, stream: bool
) -> None:
    # Real upstreams (a mock would refuse the schema itself): no member is asked, streaming or not.
    states = {"a": StandinState(answer=GOOD), "b": StandinState(answer=GOOD)}
    server = live_server(create_app(panel_config(tmp_path, _standins(live_server, **states))))
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nonsense"}}}
    answer = httpx2.post(
        server.url + "/v1/chat/completions",
        json={"model": "fusionkit/panel", "messages": QUESTION, "response_format": bad, "stream": stream},
    )
    assert answer.status_code == 400 and answer.json()["error"]["param"] == "response_format.json_schema.schema"
    assert [state.requests for state in states.values()] == [[], []]


# -- select-best and auto ------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["request", "config"])
def test_select_best_returns_the_judges_choice_verbatim_without_a_synthesizer(
    tmp_path: Path, live_server: Any, where: str
) -> None:
    config = panel_config(
        tmp_path,
        demo_endpoints(),
        judge_model="careful",
        **({"fusion": {"synthesis": "select_best"}} if where == "config" else {}),
    )
    server = live_server(create_app(config))
    extra = {"extra_body": {"fusion": {"synthesis": "select_best"}}} if where == "request" else {}
    reply = _client(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION, **extra)
    meta = reply.model_extra["fusionkit"]
    assert meta["decision"]["type"] == "select_candidate" and meta["decision"]["reason"] == "judge_selected"
    chosen = meta["decision"]["selected_candidate_id"]
    inspection = httpx2.get(f"{server.url}/v1/fusion/runs/{meta['run_id']}/inspect").json()
    texts = {c["candidate_id"]: c["text"] for c in inspection["fusionkit"]["candidates"]}
    assert reply.choices[0].message.content == texts[chosen]  # verbatim
    assert sorted(_roles(tmp_path, meta["run_id"])) == ["judge", "panel", "panel", "panel"]


@pytest.mark.parametrize(
    ("analysis", "reason"),
    [
        (
            {"best_candidate_id": "c2", "best_is_clear": True, "contradictions": ["c1 and c2 differ"]},
            "auto_selected_clear_best",
        ),
        ({"best_candidate_id": "c2", "contradictions": []}, "auto_selected_agreement"),
        (
            {"best_candidate_id": "c2", "best_is_clear": False, "contradictions": ["c1 and c2 differ"]},
            "judged_and_synthesized",
        ),
    ],
)
def test_auto_selects_when_one_is_clearly_best_or_they_agree_and_synthesizes_otherwise(
    tmp_path: Path, live_server: Any, analysis: dict[str, Any], reason: str
) -> None:
    endpoints = _standins(live_server, judge=StandinState(answer=json.dumps(analysis)))
    config = panel_config(
        tmp_path,
        [*demo_endpoints(), *endpoints],
        panel_models=["fast", "careful"],
        judge_model="judge",
        synthesizer_model="structured",
    )
    server = live_server(create_app(config))
    reply = _client(server).chat.completions.create(
        model="fusionkit/panel", messages=QUESTION, extra_body={"fusion": {"synthesis": "auto"}}
    )
    assert reply.model_extra["fusionkit"]["decision"]["reason"] == reason
    synthesized = "synthesizer" in _roles(tmp_path, reply.model_extra["fusionkit"]["run_id"])
    assert synthesized == (reason == "judged_and_synthesized")


# -- coding-agent turns --------------------------------------------------------------------------

TOOLS = [
    {
        "type": "function",
        "function": {"name": name, "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
    }
    for name in ("search", "read_file")
]


def test_adopt_takes_one_candidates_whole_batch_of_calls(tmp_path: Path, live_server: Any) -> None:
    judge = StandinState(answer='{"ranking": ["c2", "c1"], "best_candidate_id": "c2"}')
    endpoints = _standins(
        live_server,
        a=StandinState(rogue_tool="search"),
        b=StandinState(),  # calls both tools
        judge=judge,
    )
    config = panel_config(
        tmp_path, endpoints, panel_models=["a", "b"], judge_model="judge", fusion={"tool_fusion": "adopt"}
    )
    server = live_server(create_app(config))
    reply = _client(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION, tools=TOOLS)
    meta = reply.model_extra["fusionkit"]
    assert meta["decision"] == {
        "type": "select_candidate",
        "reason": "adopted_tool_calls",
        "selected_candidate_id": "c2",
    }
    calls = reply.choices[0].message.tool_calls or []
    assert [(c.id, c.function.name) for c in calls] == [("call_0_search", "search"), ("call_1_read_file", "read_file")]
    assert sorted(_roles(tmp_path, meta["run_id"])) == ["judge", "panel", "panel"]  # no synthesizer's merge


def test_the_agent_step_keeps_the_agents_own_system_prompt_first(tmp_path: Path, live_server: Any) -> None:
    writer = StandinState(answer="done")
    endpoints = _standins(
        live_server, a=StandinState(rogue_tool="search"), b=StandinState(rogue_tool="read_file"), writer=writer
    )
    config = panel_config(
        tmp_path, endpoints, panel_models=["a", "b"], judge_model="writer", synthesizer_model="writer"
    )
    server = live_server(create_app(config))
    harness = {"role": "system", "content": "You are Claude Code, an agent harness."}
    _client(server).chat.completions.create(model="fusionkit/panel", messages=[harness, *QUESTION], tools=TOOLS)
    sent = writer.requests[-1]["messages"]
    assert sent[0] == harness and sent[1]["role"] == "system" and "proposals" in sent[1]["content"]
    assert sent[2:] == QUESTION  # the conversation still ends where the client left it


# -- reasoning (the engine's side; the wire per door is in tests/test_reasoning*.py) -------------


@pytest.mark.parametrize("show", [True, False])
async def test_reasoning_comes_before_the_answer_only_when_asked_for(tmp_path: Path, show: bool) -> None:
    engine: FusionEngine = engine_of(
        tmp_path,
        {"a": Scripted("answer A"), "b": Scripted("answer B"), "judge": Scripted(ANALYSIS, "the fused answer")},
        panel_models=["a", "b"],
        judge_model="judge",
    )
    seen: list[EngineEvent] = []

    async def emit(event: EngineEvent) -> None:
        seen.append(event)

    plan = engine.plan(ask(stream=True), FusionOptions(mode="panel", show_reasoning=show))
    await engine.run(plan, MemoryRecorder(), emit)
    kinds = [type(e).__name__ for e in seen if isinstance(e, Reasoning | TextDelta)]
    if not show:
        assert "Reasoning" not in kinds
        return
    reasoning = "".join(e.text for e in seen if isinstance(e, Reasoning))
    assert kinds.index("TextDelta") > max(i for i, k in enumerate(kinds) if k == "Reasoning")
    assert "c1 (a) answered" in reasoning and "Best: c2. c2 is complete" in reasoning


@pytest.mark.parametrize(("name", "reason"), [("code", "judge_selected"), ("prose", "judged_and_synthesized")])
def test_the_example_configs_fuse_as_they_say(tmp_path: Path, live_server: Any, name: str, reason: str) -> None:
    from fusionkit_cli.config_loader import load_config

    config = load_config(Path(__file__).parent.parent / "configs" / "examples" / f"{name}.yaml")
    config.server.run_store = str(tmp_path / "runs.sqlite3")
    server = live_server(create_app(config))
    reply = _client(server).chat.completions.create(model="fusionkit/panel", messages=QUESTION)
    assert reply.model_extra["fusionkit"]["decision"]["reason"] == reason


def test_trajectories_fuse_can_stream_its_final_output(tmp_path: Path, live_server: Any) -> None:
    example = json.loads((Path(__file__).parent.parent / "configs" / "examples" / "trajectories.json").read_text())
    server = live_server(
        create_app(
            panel_config(
                tmp_path, demo_endpoints(careful={"tokens_per_s": 200}), judge_model="fast", synthesizer_model="careful"
            )
        )
    )
    url = server.url + "/v1/fusion/trajectories:fuse"
    whole = httpx2.post(url, json=example, timeout=30).json()
    with httpx2.stream("POST", url, json={**example, "stream": True}, timeout=30) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: {")]
    pieces = [f["choices"][0]["delta"].get("content") for f in frames if f["choices"]]
    assert len([p for p in pieces if p]) > 3  # streamed word by word, not in one piece
    assert "".join(p or "" for p in pieces) == whole["final_output"]
    run_id = frames[-1]["fusionkit"]["run_id"]
    inspection = httpx2.get(f"{server.url}/v1/fusion/runs/{run_id}/inspect").json()
    assert inspection["state"] == "completed" and inspection["final_output"] == whole["final_output"]
