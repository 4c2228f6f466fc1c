"""The fusion engine: one planned request in, one fused answer out, every step recorded.

    engine = FusionEngine(config, clients)
    plan = engine.plan(request, FusionOptions(mode="panel"))     # client errors (400) surface here
    result = await engine.run(plan, recorder, emit=None)
    result.message.content, result.decision, result.usage

Modes: single asks `default_model`; self samples it `sample_count` times; panel asks
each panel member once, in parallel; router picks one of those and records why (`planning`).
With several candidates a judge compares them and a synthesizer writes the answer (`decide`);
`emit` receives the answer's tokens as they are written, so the HTTP layer can stream them.
`fuse_answers` and `take_step` do the same over candidates the client gave (agent trajectories).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from bridge.errors import timed_out, upstream_failure
from bridge.protocol import AssistantMessage, ChatRequest
from server.clients import EndpointClient
from server.config import PanelConfig
from server.engine.calls import Emit, ModelCalls, RunState, ms_since
from server.engine.candidates import Best, Candidate, MemberPlan, best_candidate
from server.engine.decide import Decider
from server.engine.events import Paused, Phase, TextDelta
from server.engine.panel import Panel, record_candidate
from server.engine.pauses import ToolPauses
from server.engine.planning import RunPlan, plan_run
from server.engine.recorder import Recorder
from server.engine.result import FusionResult, Outcome
from server.engine.stops import StopCutter, cut_at_stop
from server.protocol.chat import DecisionInfo, FusionOptions

__all__ = ["Emit", "FusionEngine"]


class FusionEngine:
    def __init__(self, config: PanelConfig, clients: dict[str, EndpointClient]) -> None:
        self.config = config
        self.clients = clients
        self.calls = ModelCalls(clients)
        self.panel = Panel(
            self.calls,
            member_timeout_s=config.panel.member_timeout_s,
            quorum=config.panel.quorum,
            grace_ms=config.panel.grace_ms,
        )
        self.decider = Decider(config, self.calls)

    def plan(self, request: ChatRequest, options: FusionOptions) -> RunPlan:
        """Plan a run without calling anything; raises the errors a client should get before it starts."""
        return plan_run(self.config, self.clients, request, options)

    # -- entry points -----------------------------------------------------------------------------

    async def run(
        self, plan: RunPlan, recorder: Recorder, emit: Emit | None = None, pauses: ToolPauses | None = None
    ) -> FusionResult:
        """Execute a planned run. With `pauses`, members' tool calls pause the run for external results."""
        run = self._state(recorder, emit, plan.request, pauses)
        run.prompts = self.decider.prompts.overridden(plan.options.prompts)
        run.show_reasoning = plan.fusion.show_reasoning
        if pauses is not None and emit is not None:
            pauses.on_settled = lambda calls: emit(Paused(calls))
        async with self._wall_clock():
            await recorder.transition("generating", plan.describe())
            await run.send(Phase("generating"))
            if plan.route == "single":
                return await self._single(run, plan)
            candidates = await self.panel.ask(run, plan.request, plan.members)
            self._check_quorum(run, candidates, plan.members)
            outcome = await self.decider.decide(
                run,
                plan.request,
                candidates,
                fusion=plan.fusion,
                tools_paused=pauses is not None,
                schema=plan.schema,
            )
            if plan.options.verify:
                outcome.verification = await self.decider.verify(run, plan.request, outcome.message)
        return await self._finish(run, plan.mode, plan.route, plan.route_reasons, candidates, outcome)

    async def fuse_answers(
        self,
        request: ChatRequest,
        candidates: list[Candidate],
        recorder: Recorder,
        *,
        judge_id: str,
        synth_id: str,
        best: Best,
        emit: Emit | None = None,
    ) -> FusionResult:
        """Fuse answers produced elsewhere (agent trajectories): judge, synthesize, else fall back to `best`."""
        run = self._state(recorder, emit, request)
        for candidate in candidates:
            await record_candidate(recorder, candidate)
        async with self._wall_clock():
            outcome = await self.decider.judge_and_synthesize(
                run, request, candidates, judge_id, synth_id, best, synthesis=self.config.fusion.synthesis
            )
        reasons = ["agent trajectories given by the client"]
        return await self._finish(run, "trajectories", "trajectories", reasons, candidates, outcome)

    async def take_step(
        self,
        request: ChatRequest,
        candidates: list[Candidate],
        recorder: Recorder,
        *,
        model_id: str,
        best: Best = best_candidate,
        emit: Emit | None = None,
    ) -> FusionResult:
        """`model_id` takes the next agent step (text or tool calls) with `candidates` as reference.

        If it fails or answers nothing, the step is `best`'s answer (default: the first candidate).
        """
        run = self._state(recorder, emit, request)
        for candidate in candidates:
            await record_candidate(recorder, candidate)
        async with self._wall_clock():
            outcome = await self.decider.agent_step(run, request, candidates, model_id, best)
        reasons = ["agent step with trajectories as reference"]
        return await self._finish(run, "step", "step", reasons, candidates, outcome)

    # -- the parts --------------------------------------------------------------------------------

    def _state(
        self, recorder: Recorder, emit: Emit | None, request: ChatRequest, pauses: ToolPauses | None = None
    ) -> RunState:
        limit = self.config.budget.wall_clock_s
        return RunState(
            recorder=recorder,
            emit=emit,
            deadline=time.monotonic() + limit if limit else None,
            stops=StopCutter(request.stop_list),
            pauses=pauses,
        )

    @contextlib.asynccontextmanager
    async def _wall_clock(self) -> AsyncIterator[None]:
        """`budget.wall_clock_s` over a whole run: outstanding calls are cancelled and the run times out."""
        limit = self.config.budget.wall_clock_s
        try:
            async with asyncio.timeout(limit):
                yield
        except TimeoutError:
            error = timed_out(f"the run exceeded budget.wall_clock_s={limit}; outstanding calls were cancelled")
            error.code = "deadline_exceeded"
            raise error from None

    def _check_quorum(self, run: RunState, candidates: list[Candidate], members: list[MemberPlan]) -> None:
        min_ok = self.config.panel.min_successful
        if not candidates or len(candidates) < min(min_ok, len(members)):
            reasons = "; ".join(f"{f.endpoint_id} ({f.candidate_id}): {f.reason}" for f in run.failed)
            error = upstream_failure(
                f"{len(candidates)} of {len(members)} panel members answered, {min_ok} needed. {reasons}"
            )
            error.code = "quorum_not_met" if candidates else "all_members_failed"
            error.details = {"failed_members": [f.model_dump() for f in run.failed]}
            raise error

    async def _single(self, run: RunState, plan: RunPlan) -> FusionResult:
        member = plan.members[0]
        started = time.perf_counter()
        completion = await self.calls.call(
            run,
            "single",
            member.endpoint_id,
            plan.request,
            candidate_id=member.candidate_id,
            stream_to=run.send if run.streaming else None,
        )
        run.latency_ms["single"] = ms_since(started)
        candidate = self.panel.candidate(member, completion, run.latency_ms["single"])
        await record_candidate(run.recorder, candidate)
        outcome = Outcome(
            decision=DecisionInfo(type="select_candidate", reason="single_mode", selected_candidate_id="c1"),
            message=completion.message,
            written_finish=completion.choices[0].finish_reason,
        )
        result = await self._finish(run, plan.mode, "single", plan.route_reasons, [candidate], outcome)
        result.logprobs = completion.choices[0].logprobs
        return result

    async def _finish(
        self,
        run: RunState,
        mode: str,
        route: str,
        reasons: list[str],
        candidates: list[Candidate],
        outcome: Outcome,
    ) -> FusionResult:
        await run.recorder.event("decision", outcome.decision.model_dump())
        run.latency_ms["total"] = ms_since(run.started)
        await run.flush_text()
        message = outcome.message
        stopped = False
        if message.content is not None:
            message.content, stopped = cut_at_stop(message.content, run.stops.stops)
            if run.hold_answer and run.emit is not None and message.content:
                await run.emit(TextDelta(message.content))  # held until it was known to be in form
        return FusionResult(
            run_id=run.recorder.run_id,
            trace_id=run.recorder.trace_id,
            mode=mode,
            route=route,
            route_reasons=reasons,
            candidates=candidates,
            failed=run.failed,
            outcome=outcome,
            finish_reason=_finish_reason(message, outcome.written_finish, stopped=stopped),
            usage=run.usage,
            cost=run.cost_estimate(self.config.currency),
            latency_ms=run.latency_ms,
            mock=run.mock_used,
        )


def _finish_reason(message: AssistantMessage, written: str | None, *, stopped: bool) -> str:
    """The answer's finish reason: tool_calls when it calls tools (a stop sequence in the text beside them
    does not change that), stop when a stop sequence cut it, length when its writer ran out of tokens."""
    if message.tool_calls:
        return "tool_calls"
    if stopped:
        return "stop"
    return written if written in ("length", "content_filter") else "stop"
