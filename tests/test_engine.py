"""The fusion engine on its own: scripted endpoints, the in-memory recorder, no HTTP server.

Each endpoint is a `Scripted` adapter that answers what the test says (text, a tool call, an
error) and remembers the requests it got, so fusion logic is checked without uvicorn or mocks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.adapters import CallContext
from bridge.adapters.chunks import finish_chunk, text_chunk, usage_chunk
from bridge.endpoint import EndpointConfig
from bridge.errors import APIError, upstream_failure
from bridge.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    FunctionCall,
    ToolCall,
    Usage,
)
from server.clients import EndpointClient
from server.engine import FusionEngine, MemoryRecorder, Paused, Phase, TextDelta
from server.engine.events import EngineEvent
from server.engine.pauses import ToolPauses, ToolResult
from server.protocol.chat import FusionOptions, ToolExecution
from tests.router_helpers import panel_config

ANALYSIS = json.dumps({"ranking": ["c2", "c1"], "best_candidate_id": "c2", "rationale": "c2 is complete"})


@dataclass
class Reply:
    """A scripted answer that says more than its text: its own finish reason, tool calls beside (or instead of) it."""

    text: str | None
    finish: str | None = None
    tool_calls: list[ToolCall] | None = None


def call_of(name: str, arguments: str = "{}", call_id: str = "call_1") -> ToolCall:
    return ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments))


class Scripted:
    """An adapter that answers with `answers` in turn (a string, a Reply, or an APIError to raise)."""

    provider = "scripted"

    def __init__(self, *answers: str | Reply | APIError, finish: str = "stop") -> None:
        self.model = "scripted"
        self.answers = list(answers)
        self.finish = finish
        self.requests: list[ChatRequest] = []

    def _next(self, request: ChatRequest) -> Reply:
        self.requests.append(request)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, APIError):
            raise answer
        return answer if isinstance(answer, Reply) else Reply(answer)

    async def complete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        reply = self._next(request)
        message = AssistantMessage(content=reply.text, tool_calls=reply.tool_calls)
        finish = reply.finish or ("tool_calls" if reply.tool_calls else self.finish)
        return ChatCompletion(
            model=self.model, choices=[Choice(message=message, finish_reason=finish)], usage=Usage.of(10, 5)
        )

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatCompletionChunk]:
        reply = self._next(request)
        assert not reply.tool_calls, "Scripted streams text only"
        for word in (reply.text or "").split(" "):
            yield text_chunk(word + " ")
        yield finish_chunk(reply.finish or self.finish)
        yield usage_chunk(Usage.of(10, 5))

    async def aclose(self) -> None:
        return None


def engine_of(tmp_path: Path, adapters: dict[str, Scripted], **settings: Any) -> FusionEngine:
    endpoints = [
        {"id": name, "provider": "openai-compatible", "model": name, "base_url": "http://x.invalid/v1"}
        for name in adapters
    ]
    config = panel_config(tmp_path, endpoints, **settings)
    clients = {e.id: EndpointClient(e, adapters[e.id]) for e in (EndpointConfig.model_validate(x) for x in endpoints)}
    return FusionEngine(config, clients)


def ask(text: str = "Compare A and B", **fields: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "fusionkit/panel", "messages": [{"role": "user", "content": text}], **fields}
    )


async def test_a_panel_is_judged_and_synthesized_with_every_step_recorded(tmp_path: Path) -> None:
    judge = Scripted(ANALYSIS, "the fused answer")
    engine = engine_of(
        tmp_path,
        {"a": Scripted("answer A"), "b": Scripted("answer B"), "judge": judge},
        panel_models=["a", "b"],
        judge_model="judge",
    )
    recorder = MemoryRecorder()
    result = await engine.run(engine.plan(ask(), FusionOptions(mode="panel")), recorder)

    assert result.message.content == "the fused answer" and result.finish_reason == "stop"
    assert result.decision.reason == "judged_and_synthesized" and result.decision.selected_candidate_id == "c2"
    assert result.outcome.judge is not None and result.outcome.judge.analysis is not None
    assert [c.text for c in result.candidates] == ["answer A", "answer B"]
    assert result.usage.total_tokens == 4 * 15  # two members, the judge, the synthesizer
    types = [t for _, t, _ in recorder.events]
    assert types.count("model_call.started") == types.count("model_call.completed") == 4
    assert recorder.states == ["generating", "judging", "synthesizing"]
    assert types.index("judge.record") < types.index("synthesis.completed") < types.index("decision")
    # The judge saw both candidates and wrote with temperature 0 and its own budget.
    judged = judge.requests[0]
    assert "answer A" in judged.messages[-1].content and judged.temperature == 0  # type: ignore[operator]
    assert judged.max_tokens == engine.config.sampling.judge_max_tokens


async def test_a_failing_member_is_dropped_and_too_few_answers_fail_the_run(tmp_path: Path) -> None:
    broken = Scripted(upstream_failure("boom"))
    engine = engine_of(tmp_path, {"a": Scripted("answer A"), "b": broken}, panel={"min_successful": 2})
    with pytest.raises(APIError) as caught:
        await engine.run(engine.plan(ask(), FusionOptions(mode="panel")), MemoryRecorder())
    assert caught.value.status == 502 and "1 of 2 panel members answered, 2 needed" in caught.value.message
    assert "b (c2): boom" in caught.value.message


async def test_a_stream_gets_phases_then_the_synthesizers_words(tmp_path: Path) -> None:
    adapters = {"a": Scripted("answer A"), "b": Scripted("answer B"), "judge": Scripted(ANALYSIS, "one two three")}
    engine = engine_of(tmp_path, adapters, panel_models=["a", "b"], judge_model="judge")
    seen: list[EngineEvent] = []

    async def emit(event: EngineEvent) -> None:
        seen.append(event)

    result = await engine.run(engine.plan(ask(stream=True), FusionOptions(mode="panel")), MemoryRecorder(), emit)
    assert [e.name for e in seen if isinstance(e, Phase)] == ["generating", "judging", "synthesizing"]
    assert "".join(e.text for e in seen if isinstance(e, TextDelta)) == result.message.content == "one two three "


async def test_a_synthesizer_that_fails_before_writing_falls_back_to_the_judges_best(tmp_path: Path) -> None:
    judge = Scripted(ANALYSIS, upstream_failure("synthesizer down"))
    engine = engine_of(
        tmp_path,
        {"a": Scripted("answer A"), "b": Scripted("answer B"), "judge": judge},
        panel_models=["a", "b"],
        judge_model="judge",
    )
    result = await engine.run(engine.plan(ask(), FusionOptions(mode="panel")), MemoryRecorder())
    assert (result.decision.type, result.decision.reason) == ("select_candidate", "synthesizer_failed")
    assert result.message.content == "answer B"  # c2, the judge's best


async def test_the_plan_refuses_what_cannot_run_before_any_call(tmp_path: Path) -> None:
    member = Scripted("x")
    engine = engine_of(tmp_path, {"a": member, "b": Scripted("y")}, budget={"max_candidates": 1})
    for options, code in (
        (FusionOptions(mode="panel", panel_models=["ghost"]), "unknown_endpoint"),
        (FusionOptions(mode="single", panel_models=["nope"]), "unknown_endpoint"),
        (FusionOptions(mode="panel"), "budget_exceeded"),
    ):
        with pytest.raises(APIError) as caught:
            engine.plan(ask(), options)
        assert caught.value.status == 400 and caught.value.code == code
        assert caught.value.param == "fusion.panel_models"
    assert member.requests == []


async def test_a_plan_is_made_once_with_the_configs_sampling_defaults(tmp_path: Path) -> None:
    engine = engine_of(tmp_path, {"a": Scripted("x")}, sampling={"temperature": 0.3, "seed": 7}, sample_count=2)
    plan = engine.plan(ask(), FusionOptions(mode="self"))
    assert plan.request.temperature == 0.3 and plan.request.seed == 7
    assert [(m.endpoint_id, m.seed) for m in plan.members] == [("a", 7), ("a", 8)]


async def test_the_answer_is_cut_at_a_stop_sequence_and_a_cut_by_the_limit_says_length(tmp_path: Path) -> None:
    engine = engine_of(tmp_path, {"a": Scripted("keep this STOP not this")})
    stopped = await engine.run(engine.plan(ask(stop=["STOP"]), FusionOptions(mode="single")), MemoryRecorder())
    assert (stopped.message.content, stopped.finish_reason) == ("keep this ", "stop")

    long = engine_of(tmp_path / "2", {"a": Scripted("a b c", finish="length")})
    cut = await long.run(long.plan(ask(), FusionOptions(mode="single")), MemoryRecorder())
    assert cut.finish_reason == "length"


WORD_COUNT = {"type": "function", "function": {"name": "word_count", "parameters": {"type": "object"}}}


async def test_an_answer_that_calls_tools_finishes_tool_calls_even_when_its_text_hits_a_stop(tmp_path: Path) -> None:
    calling = Reply("let me count STOP first", tool_calls=[call_of("word_count")])
    engine = engine_of(tmp_path, {"a": Scripted(calling)})
    request = ask(stop=["STOP"], tools=[WORD_COUNT])
    result = await engine.run(engine.plan(request, FusionOptions(mode="single")), MemoryRecorder())
    assert result.message.content == "let me count " and result.message.tool_calls
    assert result.finish_reason == "tool_calls"


async def test_what_failed_on_the_way_is_named_in_the_result(tmp_path: Path) -> None:
    # The judge answers prose (invalid JSON), then the synthesizer fails: the answer is a candidate.
    judge = Scripted("I like the second one.", upstream_failure("synthesizer down"))
    engine = engine_of(
        tmp_path,
        {"a": Scripted("answer A"), "b": Scripted("answer B"), "judge": judge},
        panel_models=["a", "b"],
        judge_model="judge",
    )
    result = await engine.run(engine.plan(ask(), FusionOptions(mode="panel")), MemoryRecorder())
    assert [f.code for f in result.outcome.failures] == ["judge_invalid_json", "synthesis_empty"]
    assert "synthesizer down" in result.outcome.failures[1].message

    broken = engine_of(
        tmp_path / "2",
        {"a": Scripted("answer A"), "b": Scripted("answer B"), "judge": Scripted(upstream_failure("judge down"))},
        panel_models=["a", "b"],
        judge_model="judge",
    )
    degraded = await broken.run(broken.plan(ask(), FusionOptions(mode="panel")), MemoryRecorder())
    assert [f.code for f in degraded.outcome.failures] == ["judge_failed", "synthesis_empty"]


@pytest.mark.parametrize(
    ("members", "code"), [(["bad", "bad2"], "all_members_failed"), (["good", "bad"], "quorum_not_met")]
)
async def test_a_run_without_enough_answers_fails_with_a_typed_code_and_its_members(
    tmp_path: Path, members: list[str], code: str
) -> None:
    adapters = {
        "good": Scripted("fine"),
        "bad": Scripted(upstream_failure("down")),
        "bad2": Scripted(upstream_failure("gone")),
    }
    engine = engine_of(tmp_path, adapters, panel_models=members, panel={"min_successful": 2})
    with pytest.raises(APIError) as caught:
        await engine.run(engine.plan(ask(), FusionOptions(mode="panel")), MemoryRecorder())
    error = caught.value.body()["error"]
    assert error["code"] == code
    assert {m["endpoint_id"] for m in error["failed_members"]} == {m for m in members if m != "good"}


async def test_a_run_over_its_wall_clock_fails_with_deadline_exceeded(tmp_path: Path) -> None:
    class Slow(Scripted):
        async def complete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
            await asyncio.sleep(30)
            raise AssertionError("never reached")

    engine = engine_of(tmp_path, {"a": Slow("x")}, budget={"wall_clock_s": 0.1})
    with pytest.raises(APIError) as caught:
        await engine.run(engine.plan(ask(), FusionOptions(mode="single")), MemoryRecorder())
    assert (caught.value.status, caught.value.code) == (504, "deadline_exceeded")


class Stuck(Scripted):
    """A member that never answers (until it is cancelled)."""

    async def complete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        self.requests.append(request)
        await asyncio.Event().wait()
        raise AssertionError("never reached")


async def test_with_a_quorum_the_late_member_is_dropped_after_the_grace(tmp_path: Path) -> None:
    adapters = {
        "a": Scripted("answer A"),
        "b": Scripted("answer B"),
        "slow": Stuck("never"),
        "judge": Scripted(ANALYSIS, "fused"),
    }
    engine = engine_of(
        tmp_path, adapters, panel_models=["a", "b", "slow"], judge_model="judge", panel={"quorum": 2, "grace_ms": 50}
    )
    recorder = MemoryRecorder()
    result = await engine.run(engine.plan(ask(), FusionOptions(mode="panel")), recorder)
    assert [c.endpoint_id for c in result.candidates] == ["a", "b"] and result.message.content == "fused"
    [late] = result.failed
    assert late.endpoint_id == "slow" and late.reason == "late: 2 members had answered, 50 ms grace"
    dropped = [p for _, t, p in recorder.events if t == "candidate.dropped"]
    assert dropped == [{"candidate_id": "c3", "endpoint_id": "slow", "reason": late.reason, "late": True}]
    # The cut-off call ends in the record too, not left "started".
    calls = [
        (t, p["endpoint_id"])
        for _, t, p in recorder.events
        if t.startswith("model_call.") and p["endpoint_id"] == "slow"
    ]
    assert calls == [("model_call.started", "slow"), ("model_call.failed", "slow")]


async def test_when_the_quorum_agrees_the_late_member_is_not_waited_for(tmp_path: Path) -> None:
    adapters = {"a": Scripted("same answer"), "b": Scripted("same  ANSWER"), "slow": Stuck("never")}
    # A grace of an hour: the run would sit in it if agreement did not end the wait.
    engine = engine_of(tmp_path, adapters, panel_models=["a", "b", "slow"], panel={"quorum": 2, "grace_ms": 3_600_000})
    result = await engine.run(engine.plan(ask(), FusionOptions(mode="panel")), MemoryRecorder())
    assert result.decision.reason == "unanimous"
    assert [f.reason for f in result.failed] == ["late: 2 members had agreed"]


async def test_a_repaired_answer_finishes_as_its_repair_did(tmp_path: Path) -> None:
    # The synthesis ran out of tokens mid-JSON; its repair is whole, so the answer did not stop at a limit.
    judge = Scripted(ANALYSIS, Reply('{"answer": "cut sh', finish="length"), Reply('{"answer": "whole"}'))
    engine = engine_of(
        tmp_path,
        {"a": Scripted('{"answer": "A"}'), "b": Scripted('{"answer": "B"}'), "judge": judge},
        panel_models=["a", "b"],
        judge_model="judge",
    )
    request = ask(response_format={"type": "json_object"})
    result = await engine.run(engine.plan(request, FusionOptions(mode="panel")), MemoryRecorder())
    assert result.decision.reason == "judged_and_synthesized_repaired"
    assert (result.message.content, result.finish_reason) == ('{"answer": "whole"}', "stop")


class BreaksMidStream(Scripted):
    """Answers whole requests as Scripted; a streamed one sends `first`, then the upstream cuts it."""

    def __init__(self, *answers: str | Reply | APIError, first: str) -> None:
        super().__init__(*answers)
        self.first = first

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatCompletionChunk]:
        self.requests.append(request)
        yield text_chunk(self.first)
        raise upstream_failure("cut mid-stream")


@pytest.mark.parametrize(
    ("fields", "first"),
    [
        ({"response_format": {"type": "json_object"}}, '{"answer": '),  # held until it is checked
        ({"stop": ["END"]}, "EN"),  # held back as the possible start of the stop sequence
    ],
)
async def test_a_synthesis_cut_before_any_of_it_reached_the_client_falls_back(
    tmp_path: Path, fields: dict[str, Any], first: str
) -> None:
    adapters = {
        "a": Scripted('{"answer": "A"}'),
        "b": Scripted('{"answer": "B"}'),
        "judge": BreaksMidStream(ANALYSIS, first=first),
    }
    engine = engine_of(tmp_path, adapters, panel_models=["a", "b"], judge_model="judge")
    seen: list[EngineEvent] = []

    async def emit(event: EngineEvent) -> None:
        seen.append(event)

    plan = engine.plan(ask(stream=True, **fields), FusionOptions(mode="panel"))
    result = await engine.run(plan, MemoryRecorder(), emit)
    assert (result.decision.type, result.decision.reason) == ("select_candidate", "synthesizer_failed")
    assert [f.code for f in result.outcome.failures] == ["synthesis_empty"]
    # The client got the judge's best whole, and nothing of the cut synthesis before it.
    assert [e.text for e in seen if isinstance(e, TextDelta)] == [result.message.content] == ['{"answer": "B"}']


@pytest.mark.parametrize(
    ("writer", "reason"), [(upstream_failure("agent down"), "synthesizer_failed"), ("", "empty_synthesis")]
)
async def test_an_agent_step_that_fails_or_says_nothing_falls_back_as_a_synthesis_does(
    tmp_path: Path, writer: str | APIError, reason: str
) -> None:
    adapters = {
        "a": Scripted(Reply(None, tool_calls=[call_of("word_count", '{"text": "a b"}')])),
        "b": Scripted("No tool is needed: two words."),
        "judge": Scripted(writer),
    }
    engine = engine_of(tmp_path, adapters, panel_models=["a", "b"], judge_model="judge")
    recorder = MemoryRecorder()
    result = await engine.run(engine.plan(ask(tools=[WORD_COUNT]), FusionOptions(mode="panel")), recorder)
    assert (result.decision.type, result.decision.reason) == ("select_candidate", reason)
    assert result.decision.selected_candidate_id == "c1" and result.finish_reason == "tool_calls"
    [failure] = result.outcome.failures
    assert failure.code == "synthesis_empty" and "candidate c1" in failure.message
    [empty] = [p for _, t, p in recorder.events if t == "synthesis.empty"]
    assert empty["fallback_candidate_id"] == "c1" and empty["reason"].startswith(reason)


async def test_select_best_with_a_failed_judge_says_the_answer_is_the_fallback(tmp_path: Path) -> None:
    adapters = {"a": Scripted("answer A"), "b": Scripted("answer B"), "judge": Scripted(upstream_failure("down"))}
    engine = engine_of(tmp_path, adapters, panel_models=["a", "b"], judge_model="judge")
    plan = engine.plan(ask(), FusionOptions(mode="panel", synthesis="select_best"))
    result = await engine.run(plan, MemoryRecorder())
    assert (result.decision.reason, result.decision.selected_candidate_id) == ("judge_failed_fallback", "c1")
    assert [f.code for f in result.outcome.failures] == ["judge_failed"] and result.message.content == "answer A"


# -- external tool pauses at the panel's edges -----------------------------------------------------


class PausingRecorder(MemoryRecorder):
    """Opens `paused` once a member's tool call is pending (the run is requires_action)."""

    def __init__(self) -> None:
        super().__init__()
        self.paused = asyncio.Event()

    async def transition(self, state: str, payload: dict[str, Any] | None = None) -> int:
        if state == "requires_action":
            self.paused.set()
        return await super().transition(state, payload)


class Gated(Scripted):
    """Answers once `gate` is open."""

    def __init__(self, gate: asyncio.Event, *answers: str | Reply | APIError) -> None:
        super().__init__(*answers)
        self.gate = gate

    async def complete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        await self.gate.wait()
        return await super().complete(request, ctx)


class PlanCounter(MemoryRecorder):
    """Opens `planned` once `count` members have planned tool calls (and so wait for their results)."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count
        self.planned = asyncio.Event()

    async def event(self, type: str, payload: dict[str, Any]) -> int:
        seq = await super().event(type, payload)
        if sum(t == "tool.plan" for _, t, _ in self.events) >= self.count:
            self.planned.set()
        return seq


def pauses_for(engine: FusionEngine, recorder: MemoryRecorder, request: ChatRequest) -> ToolPauses:
    return ToolPauses(recorder, ToolExecution(mode="external"), request.tools or [], engine.config.budget)


COUNT_CALL = call_of("word_count", '{"text": "a b"}')


async def test_with_a_quorum_a_member_paused_for_a_tool_result_is_waited_for_not_cut(tmp_path: Path) -> None:
    recorder = PausingRecorder()
    adapters = {
        # The two that answer do so once the third is paused: the quorum is met while it waits.
        "a": Gated(recorder.paused, "answer A"),
        "b": Gated(recorder.paused, "answer B"),
        "tooled": Scripted(Reply(None, tool_calls=[COUNT_CALL]), "two words, counted"),
        "judge": Scripted(ANALYSIS, "fused"),
    }
    engine = engine_of(tmp_path, adapters, panel_models=["a", "b", "tooled"], judge_model="judge", panel={"quorum": 2})
    request = ask(tools=[WORD_COUNT])
    pauses = pauses_for(engine, recorder, request)
    announced: list[Paused] = []
    settled = asyncio.Event()

    async def emit(event: EngineEvent) -> None:
        if isinstance(event, Paused):
            announced.append(event)
            settled.set()

    plan = engine.plan(request, FusionOptions(mode="panel"))
    running = asyncio.create_task(engine.run(plan, recorder, emit, pauses))
    await settled.wait()
    [call] = announced[0].calls
    assert call["candidate_id"] == "c3"
    await pauses.submit([ToolResult(tool_call_id=call["tool_call_id"], output="2")])
    result = await running
    assert [c.endpoint_id for c in result.candidates] == ["a", "b", "tooled"] and result.failed == []
    assert result.candidates[2].text == "two words, counted" and len(announced) == 1
    assert result.decision.reason == "judged_and_synthesized"


async def test_a_run_cut_by_its_wall_clock_ends_its_members_first_and_withdraws_their_calls(tmp_path: Path) -> None:
    adapters = {
        "a": Scripted("answer A"),
        "tooled": Scripted(Reply(None, tool_calls=[COUNT_CALL])),
        "slow": Stuck("never"),
    }
    engine = engine_of(tmp_path, adapters, panel_models=["a", "tooled", "slow"], budget={"wall_clock_s": 0.2})
    request = ask(tools=[WORD_COUNT])
    recorder = MemoryRecorder()
    pauses = pauses_for(engine, recorder, request)
    announced: list[Paused] = []

    async def emit(event: EngineEvent) -> None:
        if isinstance(event, Paused):
            announced.append(event)

    with pytest.raises(APIError) as caught:
        await engine.run(engine.plan(request, FusionOptions(mode="panel")), recorder, emit, pauses)
    assert caught.value.code == "deadline_exceeded"
    # Before the run failed, every call it made ended in the record, and no pause was announced.
    ended = [p["endpoint_id"] for _, t, p in recorder.events if t == "model_call.failed"]
    assert ended == ["slow"] and announced == []
    # The paused member's call is withdrawn: a result sent for it is refused, not applied to a dead run.
    assert pauses.plan() == []
    with pytest.raises(APIError) as refused:
        await pauses.submit([ToolResult(tool_call_id=COUNT_CALL.id, output="2")])
    assert (refused.value.status, refused.value.code) == (409, "run_not_waiting")


async def test_a_shared_call_outlives_a_member_that_stops_waiting_for_it(tmp_path: Path) -> None:
    request = ask(tools=[WORD_COUNT])
    engine = engine_of(tmp_path, {"a": Scripted("x")})
    recorder = PlanCounter(2)
    pauses = pauses_for(engine, recorder, request)

    async def member(candidate_id: str) -> list[str]:
        pauses.member_started()
        try:
            return await pauses.request(candidate_id, "a", [COUNT_CALL])
        finally:
            await pauses.member_finished(candidate_id)

    first = asyncio.create_task(member("c1"))
    second = asyncio.create_task(member("c2"))
    await recorder.planned.wait()  # both members are waiting for the result
    plans = [p for _, t, p in recorder.events if t == "tool.plan"]
    # The second member's identical read-only call waits on the first one's, and says whose.
    assert plans[1]["calls"][0]["deduplicated"] and plans[1]["calls"][0]["shared_with"] == "c1"
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)
    [pending] = pauses.plan()
    await pauses.submit([ToolResult(tool_call_id=pending["tool_call_id"], output="2")])
    assert await first == ["2"]
