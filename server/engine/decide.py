"""From candidates to the answer: select one when that is enough, else judge → synthesize, with a
fallback to the best candidate when the synthesis fails; the agent step for tool-bearing turns;
and the verifier's pass over the answer.

    decider = Decider(config, calls)
    outcome = await decider.decide(run, request, candidates, tools_paused=False)
    outcome.decision, outcome.message, outcome.judge
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bridge.errors import APIError
from bridge.protocol import AssistantMessage, ChatRequest
from server.config import PanelConfig
from server.engine.calls import ModelCalls, RunState, ms_since
from server.engine.candidates import Candidate, same_tool_calls, unanimous
from server.engine.events import EngineEvent, Phase, TextDelta
from server.engine.judge import JudgeAnalysis, parse_analysis
from server.engine.prompts import (
    agent_request,
    judge_request,
    parse_verdict,
    record_prompt,
    synthesis_request,
    verifier_request,
)
from server.engine.result import Failure, FailureCode, JudgeOutcome, Outcome, Verification
from server.prompt_files import PromptSet, load_prompts
from server.protocol.chat import DecisionInfo

__all__ = ["Best", "Decider", "best_candidate"]

# Chooses the fallback answer when the synthesizer gives none (trajectories prefer verified ones).
Best = Callable[[list[Candidate], JudgeAnalysis | None], Candidate]


def best_candidate(candidates: list[Candidate], analysis: JudgeAnalysis | None) -> Candidate:
    """The judge's best candidate, else the first of its ranking that exists, else the first candidate."""
    if analysis is not None:
        by_id = {c.candidate_id: c for c in candidates}
        for cid in [analysis.best_candidate_id, *analysis.ranking]:
            if cid in by_id:
                return by_id[cid]
    return candidates[0]


class Decider:
    def __init__(self, config: PanelConfig, calls: ModelCalls, prompts: PromptSet | None = None) -> None:
        self.config = config
        self.calls = calls
        # The config's prompt files, else the working directory's .fusionkit/prompts, else the built-ins.
        self.prompts = prompts or load_prompts(config.fusion.prompts.paths(), Path.cwd())

    def _prompts(self, run: RunState) -> PromptSet:
        """A request's own prompts (`fusion.prompts`), else the router's."""
        return run.prompts or self.prompts

    async def decide(
        self, run: RunState, request: ChatRequest, candidates: list[Candidate], *, tools_paused: bool
    ) -> Outcome:
        """Judge and synthesize, unless the candidates make that unnecessary or the budget forbids it."""
        if len(candidates) == 1:
            return await self.select(run, candidates[0], "only_one_candidate")
        if same_tool_calls(candidates):
            return await self.select(run, candidates[0], "unanimous_tool_call")
        if unanimous(candidates):
            return await self.select(run, candidates[0], "unanimous")
        max_cost = self.config.budget.max_cost
        if max_cost is not None and run.cost > max_cost:
            await run.recorder.event("budget.exceeded", {"budget": "max_cost", "limit": max_cost, "cost": run.cost})
            outcome = await self.select(run, candidates[0], "budget_max_cost")
            spent = (
                f"the panel cost {run.cost:.6f}, over budget.max_cost={max_cost}: no judge or synthesizer was called"
            )
            outcome.failures.append(Failure("budget_exceeded", spent))
            return outcome
        if request.tools and not tools_paused:
            # With external tool execution the members already did the tool work; their answers are fused as text.
            return await self.agent_step(run, request, candidates, self.config.synthesizer)
        return await self.judge_and_synthesize(run, request, candidates, self.config.judge, self.config.synthesizer)

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
    ) -> Outcome:
        """The judge compares, the synthesizer writes; an empty or failed synthesis falls back to `best`."""
        judge, judged_text = await self._judge(run, request, candidates, judge_id)
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
        streamed = False

        async def forward(event: EngineEvent) -> None:
            nonlocal streamed
            streamed = True
            await run.send(event)

        written_finish = None
        try:
            written = await self.calls.call(
                run, "synthesizer", synth_id, synth, stream_to=forward if run.streaming else None
            )
            text, written_finish = written.text, written.choices[0].finish_reason
        except APIError as error:
            if streamed:
                raise  # part of an answer is already with the client: nothing else can follow it
            text, reason = "", f"synthesizer_failed: {error.message}"
        else:
            reason = "empty_synthesis"
        run.latency_ms["synthesis"] = ms_since(started)
        if not text.strip():
            fallback = best(candidates, judge.analysis)
            await run.recorder.event(
                "synthesis.empty", {"fallback_candidate_id": fallback.candidate_id, "reason": reason}
            )
            outcome = await self.select(run, fallback, reason.split(":")[0])
            said = "the synthesizer failed" if reason.startswith("synthesizer_failed") else "the synthesis was empty"
            outcome.failures.append(
                Failure("synthesis_empty", f"{said} ({reason}); the answer is candidate {fallback.candidate_id}")
            )
        else:
            sha = await run.recorder.artifact(text)
            await run.recorder.event("synthesis.completed", {"artifact_sha256": sha, "chars": len(text)})
            outcome = Outcome(
                decision=DecisionInfo(
                    type="synthesize",
                    reason="judged_and_synthesized",
                    selected_candidate_id=judge.analysis.best_candidate_id if judge.analysis else None,
                ),
                message=AssistantMessage(content=text),
                written_finish=written_finish,
            )
        outcome.judge, outcome.synthesizer_model_id = judge, synth_id
        if judge.parse_error is not None:
            code: FailureCode = "judge_failed" if judge.call_failed else "judge_invalid_json"
            outcome.failures.insert(0, Failure(code, judge.parse_error))
        return outcome

    async def _judge(
        self, run: RunState, request: ChatRequest, candidates: list[Candidate], judge_id: str
    ) -> tuple[JudgeOutcome, str]:
        """The judge's analysis (and its raw reply). A failed or unparseable judge degrades, never fails the run."""
        await run.recorder.transition("judging")
        await run.send(Phase("judging"))
        started = time.perf_counter()
        endpoint = self.calls.clients[judge_id].endpoint
        asked = await record_prompt(
            run.recorder,
            judge_request(
                endpoint,
                request,
                candidates,
                prompts=self._prompts(run),
                structured=endpoint.supports_structured_output(),
                max_tokens=self.config.sampling.judge_max_tokens,
            ),
        )
        call_failed = False
        try:
            judged_text = (await self.calls.call(run, "judge", judge_id, asked)).text
            analysis, parse_error = parse_analysis(judged_text)
        except APIError as error:
            # Without an analysis the synthesizer still has the candidates: degrade, do not fail.
            judged_text, analysis, parse_error = "", None, f"the judge call failed: {error.message}"
            call_failed = True
        run.latency_ms["judge"] = ms_since(started)
        raw_sha = await run.recorder.artifact(judged_text, "application/json" if analysis else "text/plain")
        await run.recorder.event(
            "judge.record",
            {
                "judge_model_id": judge_id,
                "analysis": analysis.model_dump() if analysis else None,
                "parse_error": parse_error,
                "raw_artifact_sha256": raw_sha,
            },
        )
        judge = JudgeOutcome(model_id=judge_id, analysis=analysis, parse_error=parse_error, call_failed=call_failed)
        return judge, judged_text

    async def agent_step(
        self,
        run: RunState,
        request: ChatRequest,
        candidates: list[Candidate],
        model_id: str,
        best: Best | None = None,
    ) -> Outcome:
        """With tools, `model_id` takes the turn itself (text or calls), the candidates as reference."""
        await run.recorder.transition(
            "synthesizing", {"reason": "the agent step is taken with the proposals as reference"}
        )
        await run.send(Phase("synthesizing"))
        started = time.perf_counter()
        asked = await record_prompt(
            run.recorder,
            agent_request(self.calls.clients[model_id].endpoint, request, candidates, prompts=self._prompts(run)),
        )
        answered = await self.calls.call(
            run, "synthesizer", model_id, asked, stream_to=run.send if run.streaming else None
        )
        run.latency_ms["synthesis"] = ms_since(started)
        message = answered.message
        if not (message.content or "").strip() and not message.tool_calls:
            fallback = best(candidates, None) if best is not None else candidates[0]
            await run.recorder.event("synthesis.empty", {"fallback_candidate_id": fallback.candidate_id})
            outcome = await self.select(run, fallback, "empty_synthesis")
        else:
            await run.recorder.event(
                "synthesis.completed",
                {
                    "chars": len(message.content or ""),
                    "tool_calls": [c.model_dump() for c in message.tool_calls or []],
                },
            )
            outcome = Outcome(
                decision=DecisionInfo(type="synthesize", reason="agent_step"),
                message=message,
                written_finish=answered.choices[0].finish_reason,
            )
        outcome.synthesizer_model_id = model_id
        return outcome

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
