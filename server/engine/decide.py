"""From candidates to the answer: select one when that is enough, else judge → synthesize (or the
judge's choice verbatim: `fusion.synthesis`), with a fallback to the best candidate when the
synthesis fails; for tool-bearing turns the agent step or one candidate's calls adopted whole
(`fusion.tool_fusion`); answers held to the JSON the client asked for (`holding`); the verifier's pass.

    decider = Decider(config, calls)
    outcome = await decider.decide(run, request, candidates, fusion=plan.fusion, tools_paused=False,
                                   schema=plan.schema)
    outcome.decision, outcome.message, outcome.judge
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge.errors import APIError
from bridge.protocol import AssistantMessage, ChatRequest
from server.config import FusionSettings, PanelConfig
from server.engine.calls import ModelCalls, RunState, ms_since
from server.engine.candidates import Best, Candidate, best_candidate, same_tool_calls, unanimous
from server.engine.events import EngineEvent, Phase, TextDelta
from server.engine.holding import SchemaHold
from server.engine.judge import JudgeAnalysis
from server.engine.judging import judge_candidates
from server.engine.prompts import agent_request, parse_verdict, record_prompt, synthesis_request, verifier_request
from server.engine.result import Failure, FailureCode, JudgeOutcome, Outcome, Verification
from server.engine.structured import AnswerSchema
from server.prompt_files import PromptSet, load_prompts
from server.protocol.chat import DecisionInfo

__all__ = ["Decider"]


def _judge_choice(judge: JudgeOutcome) -> str:
    """Why a candidate taken on the judge's word is the answer: the judge chose it, or the judge failed (or its
    reply was no analysis) and it is the fallback, the first candidate (`best` with no analysis)."""
    return "judge_selected" if judge.analysis is not None else "judge_failed_fallback"


def _clearly_best(analysis: JudgeAnalysis | None) -> str | None:
    """Why `fusion.synthesis: auto` may take the judge's choice verbatim, or None when it should synthesize."""
    if analysis is None or analysis.best_candidate_id is None:
        return None
    if analysis.best_is_clear:
        return "auto_selected_clear_best"
    return None if analysis.contradictions else "auto_selected_agreement"


class Decider:
    def __init__(self, config: PanelConfig, calls: ModelCalls, prompts: PromptSet | None = None) -> None:
        self.config = config
        self.calls = calls
        # The config's prompt files, else the working directory's .fusionkit/prompts, else the built-ins.
        self.prompts = prompts or load_prompts(config.fusion.prompts.paths(), Path.cwd())
        self.hold = SchemaHold(calls, config.synthesizer, self.select)

    def _prompts(self, run: RunState) -> PromptSet:
        """A request's own prompts (`fusion.prompts`), else the router's."""
        return run.prompts or self.prompts

    async def decide(
        self,
        run: RunState,
        request: ChatRequest,
        candidates: list[Candidate],
        *,
        fusion: FusionSettings,
        tools_paused: bool,
        schema: AnswerSchema | None,
    ) -> Outcome:
        """Judge and synthesize, unless the candidates make that unnecessary or the budget forbids it;
        with `schema` (the plan's), the answer is held to that JSON."""
        if schema is not None:
            run.hold_answer = True  # nothing reaches the client before the answer is known to be in form
            for candidate in candidates:
                if not candidate.tool_calls:
                    candidate.schema_error = schema.problem(candidate.text)
        outcome = await self._choose(run, request, candidates, fusion, tools_paused)
        if schema is not None and not outcome.message.tool_calls:
            outcome = await self.hold.hold_to(schema, run, request, candidates, outcome)
        return outcome

    async def _choose(
        self,
        run: RunState,
        request: ChatRequest,
        candidates: list[Candidate],
        fusion: FusionSettings,
        tools_paused: bool,
    ) -> Outcome:
        if len(candidates) == 1:
            return await self.select(run, candidates[0], "only_one_candidate")
        if same_tool_calls(candidates):
            return await self.select(run, candidates[0], "unanimous_tool_call")
        if unanimous(candidates):
            return await self.select(run, candidates[0], "unanimous")
        max_cost = self.config.budget.max_cost
        if max_cost is not None and run.cost > max_cost:
            await run.recorder.event("budget.exceeded", {"budget": "max_cost", "limit": max_cost, "cost": run.cost})
            outcome = await self.select(run, best_candidate(candidates, None), "budget_max_cost")
            spent = (
                f"the panel cost {run.cost:.6f}, over budget.max_cost={max_cost}: no judge or synthesizer was called"
            )
            outcome.failures.append(Failure("budget_exceeded", spent))
            return outcome
        if request.tools and not tools_paused:
            # With external tool execution the members already did the tool work; their answers are fused as text.
            if fusion.tool_fusion == "adopt":
                return await self.adopt(run, request, candidates)
            return await self.agent_step(run, request, candidates, self.config.synthesizer)
        return await self.judge_and_synthesize(
            run, request, candidates, self.config.judge, self.config.synthesizer, synthesis=fusion.synthesis
        )

    async def select(self, run: RunState, candidate: Candidate, reason: str) -> Outcome:
        if candidate.text:
            await run.send(TextDelta(candidate.text))
        return Outcome(
            decision=DecisionInfo(type="select_candidate", reason=reason, selected_candidate_id=candidate.candidate_id),
            message=AssistantMessage(content=candidate.text or None, tool_calls=candidate.tool_calls or None),
            written_finish=candidate.finish_reason,
        )

    async def judge_and_synthesize(
        self,
        run: RunState,
        request: ChatRequest,
        candidates: list[Candidate],
        judge_id: str,
        synth_id: str,
        best: Best = best_candidate,
        synthesis: str = "synthesize",
    ) -> Outcome:
        """The judge compares, the synthesizer writes; an empty or failed synthesis falls back to `best`.

        With `synthesis` select_best (or auto, when the judge finds one candidate clearly best or the
        candidates agree) the judge's choice is the answer, verbatim, and no synthesizer is called.
        """
        judge, judged_text = await self._judge(run, request, candidates, judge_id)
        chosen = _judge_choice(judge) if synthesis == "select_best" else None
        if synthesis == "auto":
            chosen = _clearly_best(judge.analysis)
        if chosen is not None:
            outcome = await self.select(run, best(candidates, judge.analysis), chosen)
            return self._judged(outcome, judge)
        await run.recorder.transition("synthesizing")
        await run.send(Phase("synthesizing"))
        started = time.perf_counter()
        synth = await record_prompt(
            run.recorder,
            synthesis_request(
                self.calls.clients[synth_id].endpoint,
                request,
                candidates,
                judge.analysis,
                judged_text,
                prompts=self._prompts(run),
            ),
        )
        decision = DecisionInfo(
            type="synthesize",
            reason="judged_and_synthesized",
            selected_candidate_id=judge.analysis.best_candidate_id if judge.analysis else None,
        )
        outcome = await self._write(
            run, synth_id, synth, decision, lambda: best(candidates, judge.analysis), started=started, tools=False
        )
        return self._judged(outcome, judge)

    async def _write(
        self,
        run: RunState,
        writer_id: str,
        asked: ChatRequest,
        decision: DecisionInfo,
        fallback: Callable[[], Candidate],
        *,
        started: float,
        tools: bool,
    ) -> Outcome:
        """The synthesizer's answer (with `tools`, the agent step's: text or tool calls) as the outcome.

        One that fails before any of it reached the client, or that says nothing, gives way to the
        `fallback` candidate (reason `synthesizer_failed` or `empty_synthesis`, failure `synthesis_empty`);
        one that fails after part of it reached the client fails the run: nothing else can follow that part.
        """
        streamed = False

        async def forward(event: EngineEvent) -> None:
            nonlocal streamed
            # Held text (structured output, a possible stop sequence) has not reached the client.
            streamed = await run.send(event) or streamed

        try:
            written = await self.calls.call(
                run, "synthesizer", writer_id, asked, stream_to=forward if run.streaming else None
            )
        except APIError as error:
            if streamed:
                raise
            written, reason = None, f"synthesizer_failed: {error.message}"
        else:
            reason = "empty_synthesis"
        run.latency_ms["synthesis"] = ms_since(started)
        message = AssistantMessage()
        if written is not None:
            message = written.message if tools else AssistantMessage(content=written.text)
        if written is None or not ((message.content or "").strip() or message.tool_calls):
            outcome = await self._fall_back(run, fallback(), reason)
        else:
            if tools:
                calls = [c.model_dump() for c in message.tool_calls or []]
                completed: dict[str, Any] = {"chars": len(message.content or ""), "tool_calls": calls}
            else:
                text = message.content or ""
                completed = {"artifact_sha256": await run.recorder.artifact(text), "chars": len(text)}
            await run.recorder.event("synthesis.completed", completed)
            outcome = Outcome(decision=decision, message=message, written_finish=written.choices[0].finish_reason)
        outcome.synthesizer_model_id = writer_id
        return outcome

    async def _fall_back(self, run: RunState, fallback: Candidate, reason: str) -> Outcome:
        """`fallback` as the answer, since the synthesizer gave none (`reason`), with `synthesis_empty` to say so."""
        await run.recorder.event("synthesis.empty", {"fallback_candidate_id": fallback.candidate_id, "reason": reason})
        run.stops.reset()  # what it held back of the failed synthesis is not part of this answer
        outcome = await self.select(run, fallback, reason.split(":")[0])
        said = "the synthesizer failed" if reason.startswith("synthesizer_failed") else "the synthesis was empty"
        outcome.failures.append(
            Failure("synthesis_empty", f"{said} ({reason}); the answer is candidate {fallback.candidate_id}")
        )
        return outcome

    @staticmethod
    def _judged(outcome: Outcome, judge: JudgeOutcome) -> Outcome:
        """The outcome with the judge's part in it: its analysis, and its failure if it had one."""
        outcome.judge = judge
        if judge.parse_error is not None:
            code: FailureCode = "judge_failed" if judge.call_failed else "judge_invalid_json"
            outcome.failures.insert(0, Failure(code, judge.parse_error))
        return outcome

    async def _judge(
        self, run: RunState, request: ChatRequest, candidates: list[Candidate], judge_id: str
    ) -> tuple[JudgeOutcome, str]:
        max_tokens = self.config.sampling.judge_max_tokens
        return await judge_candidates(
            run, self.calls, request, candidates, judge_id, prompts=self._prompts(run), max_tokens=max_tokens
        )

    async def adopt(self, run: RunState, request: ChatRequest, candidates: list[Candidate]) -> Outcome:
        """`tool_fusion: adopt`: the judge picks one candidate, whose whole turn (its batch of tool calls,
        never a merge of arguments) is the answer as it was proposed."""
        judge, _ = await self._judge(run, request, candidates, self.config.judge)
        proposing = [c for c in candidates if c.tool_calls]
        chosen = best_candidate(proposing or candidates, judge.analysis)
        outcome = await self.select(run, chosen, "adopted_tool_calls" if chosen.tool_calls else _judge_choice(judge))
        return self._judged(outcome, judge)

    async def agent_step(
        self,
        run: RunState,
        request: ChatRequest,
        candidates: list[Candidate],
        model_id: str,
        best: Best = best_candidate,
    ) -> Outcome:
        """With tools, `model_id` takes the turn itself (text or calls), the candidates as reference; when it
        fails or says nothing, `best` (no judge: the first candidate by default) is the turn, as for a synthesis."""
        await run.recorder.transition(
            "synthesizing", {"reason": "the agent step is taken with the proposals as reference"}
        )
        await run.send(Phase("synthesizing"))
        started = time.perf_counter()
        asked = await record_prompt(
            run.recorder,
            agent_request(self.calls.clients[model_id].endpoint, request, candidates, prompts=self._prompts(run)),
        )
        decision = DecisionInfo(type="synthesize", reason="agent_step")
        return await self._write(
            run, model_id, asked, decision, lambda: best(candidates, None), started=started, tools=True
        )

    async def verify(self, run: RunState, request: ChatRequest, message: AssistantMessage) -> Verification:
        await run.recorder.transition("verifying")
        await run.send(Phase("verifying"))
        judge_id = self.config.judge
        started = time.perf_counter()
        asked = await record_prompt(
            run.recorder,
            verifier_request(
                self.calls.clients[judge_id].endpoint,
                request,
                message.content or "",
                prompts=self._prompts(run),
                max_tokens=self.config.sampling.judge_max_tokens,
            ),
        )
        checked = await self.calls.call(run, "verifier", judge_id, asked)
        run.latency_ms["verify"] = ms_since(started)
        verification = parse_verdict(checked.text, judge_id)
        await run.recorder.event("verification.completed", verification.payload())
        return verification
