"""The fusion engine: one request in, one fused answer out, every step recorded.

    engine = FusionEngine(config, clients)
    result = await engine.run(request, FusionOptions(mode="panel"), recorder, emit=None)
    result.message.content, result.metadata.decision

Modes (SPEC §6): single asks `default_model`; self samples it `sample_count` times; panel asks
each panel member once, in parallel; router picks one of those and records why. With several
candidates a judge compares them and a synthesizer writes the answer; `emit` receives the
synthesizer's tokens as they arrive (or the single model's), so the HTTP layer can stream them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.adapters import CallContext
from bridge.errors import APIError, bad_request, timed_out, upstream_failure
from bridge.protocol import AssistantMessage, ChatCompletion, ChatMessage, ChatRequest, Usage
from bridge.stream import StreamAccumulator
from server.clients import EndpointClient
from server.config import PanelConfig
from server.engine.candidates import Candidate, MemberPlan, same_tool_calls, unanimous
from server.engine.events import EngineEvent, Phase, TextDelta
from server.engine.judge import JudgeAnalysis, parse_analysis
from server.engine.pauses import ToolPauses, ToolRefused
from server.engine.prompts import agent_request, judge_request, parse_verdict, synthesis_request, verifier_request
from server.engine.recorder import Recorder
from server.engine.routing import choose_route
from server.protocol import DecisionInfo, FailedMember, FusionMetadata, FusionOptions

__all__ = ["FusionEngine", "FusionResult"]

Emit = Callable[[EngineEvent], Awaitable[None]]


@dataclass
class FusionResult:
    message: AssistantMessage
    finish_reason: str
    usage: Usage
    metadata: FusionMetadata
    analysis: JudgeAnalysis | None = None


@dataclass
class _Run:
    """The mutable bookkeeping of one run; the engine's methods fill it in as phases complete."""

    recorder: Recorder
    emit: Emit | None
    deadline: float | None
    started: float = field(default_factory=time.perf_counter)
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    cost_known: bool = True
    latency_ms: dict[str, float] = field(default_factory=dict)
    failed: list[FailedMember] = field(default_factory=list)
    calls: int = 0
    pauses: ToolPauses | None = None

    async def send(self, event: EngineEvent) -> None:
        if self.emit is not None:
            await self.emit(event)


class FusionEngine:
    def __init__(self, config: PanelConfig, clients: dict[str, EndpointClient]) -> None:
        self.config = config
        self.clients = clients

    # -- entry point ------------------------------------------------------------------------------

    async def run(
        self,
        request: ChatRequest,
        options: FusionOptions,
        recorder: Recorder,
        emit: Emit | None = None,
        pauses: ToolPauses | None = None,
    ) -> FusionResult:
        """Execute one run. With `pauses`, members' tool calls pause the run for external results."""
        run = _Run(recorder=recorder, emit=emit, deadline=self._deadline(), pauses=pauses)
        async with self._wall_clock():
            return await self._run(request, options, run)

    async def fuse_answers(
        self,
        request: ChatRequest,
        candidates: list[Candidate],
        recorder: Recorder,
        *,
        judge_id: str,
        synth_id: str,
        best: Callable[[list[Candidate], JudgeAnalysis | None], Candidate],
        emit: Emit | None = None,
    ) -> FusionResult:
        """Fuse answers produced elsewhere (agent trajectories): judge, synthesize, else fall back to `best`."""
        run = _Run(recorder=recorder, emit=emit, deadline=self._deadline())
        await self._record_given(recorder, candidates)
        async with self._wall_clock():
            decision, message, meta = await self._judge_and_synthesize(
                request, candidates, run, judge_id, synth_id, best
            )
        result = await self._finish(
            run,
            "trajectories",
            "trajectories",
            ["agent trajectories given by the client"],
            candidates,
            decision,
            message,
            meta,
        )
        result.analysis = meta.get("analysis")
        return result

    async def take_step(
        self,
        request: ChatRequest,
        candidates: list[Candidate],
        recorder: Recorder,
        *,
        model_id: str,
        best: Callable[[list[Candidate], JudgeAnalysis | None], Candidate] | None = None,
        emit: Emit | None = None,
    ) -> FusionResult:
        """`model_id` takes the next agent step (text or tool calls) with `candidates` as reference.

        If it answers nothing, the step is `best`'s answer (default: the first candidate).
        """
        run = _Run(recorder=recorder, emit=emit, deadline=self._deadline())
        await self._record_given(recorder, candidates)
        async with self._wall_clock():
            decision, message, meta = await self._agent_step(request, candidates, run, model_id, best)
        return await self._finish(
            run, "step", "step", ["agent step with trajectories as reference"], candidates, decision, message, meta
        )

    def _deadline(self) -> float | None:
        limit = self.config.budget.wall_clock_s
        return time.monotonic() + limit if limit else None

    @contextlib.asynccontextmanager
    async def _wall_clock(self) -> AsyncIterator[None]:
        """`budget.wall_clock_s` over a whole run: outstanding calls are cancelled and the run times out."""
        limit = self.config.budget.wall_clock_s
        try:
            async with asyncio.timeout(limit):
                yield
        except TimeoutError:
            raise timed_out(f"the run exceeded budget.wall_clock_s={limit}; outstanding calls were cancelled") from None

    @staticmethod
    async def _record_given(recorder: Recorder, candidates: list[Candidate]) -> None:
        """Candidates the client gave (trajectories) are recorded like panel answers, so a run shows them."""
        for candidate in candidates:
            candidate.artifact_sha256 = await recorder.artifact(candidate.text)
            await recorder.event(
                "candidate.recorded",
                candidate.model_dump(include={"candidate_id", "endpoint_id", "model", "artifact_sha256"}),
            )

    def check(self, request: ChatRequest, options: FusionOptions) -> tuple[str, str, list[str], list[MemberPlan]]:
        """Plan a run without calling anything: (mode, route, route reasons, member plans).

        Raises the errors a client should get before a run starts (unknown panel members, budgets).
        """
        mode: str = options.mode or self.config.default_mode
        route, reasons = mode, [f"mode '{mode}' requested"]
        if mode == "router":
            route, reasons = choose_route(request, endpoint_count=len(self.config.endpoints))
        plans = self._plan(route, options, request)
        max_candidates = self.config.budget.max_candidates
        if max_candidates is not None and len(plans) > max_candidates:
            raise bad_request(
                f"the run would make {len(plans)} candidates but budget.max_candidates is {max_candidates}",
                code="budget_exceeded",
                param="fusion.sample_count" if route == "self" else "fusion.panel_models",
            )
        return mode, route, reasons, plans

    async def _run(self, request: ChatRequest, options: FusionOptions, run: _Run) -> FusionResult:
        request = self._with_sampling_defaults(request)
        mode, route, reasons, plans = self.check(request, options)
        await run.recorder.transition(
            "generating",
            {"mode": mode, "route": route, "route_reasons": reasons, "members": [p.model_dump() for p in plans]},
        )
        await run.send(Phase("generating"))

        if route == "single":
            return await self._single(request, plans[0], run, mode, reasons)

        phase_start = time.perf_counter()
        candidates = await self._panel(request, plans, run)
        run.latency_ms["panel"] = _ms_since(phase_start)
        min_ok = self.config.panel.min_successful
        if not candidates or len(candidates) < min(min_ok, len(plans)):
            reasons_text = "; ".join(f"{f.endpoint_id} ({f.candidate_id}): {f.reason}" for f in run.failed)
            raise upstream_failure(
                f"{len(candidates)} of {len(plans)} panel members answered, {min_ok} needed. {reasons_text}"
            )

        decision, message, analysis_meta = await self._decide(request, candidates, run, options)
        if options.verify:
            analysis_meta["verification"] = await self._verify(request, message, run)
        return await self._finish(run, mode, route, reasons, candidates, decision, message, analysis_meta)

    # -- planning ---------------------------------------------------------------------------------

    def _with_sampling_defaults(self, request: ChatRequest) -> ChatRequest:
        sampling = self.config.sampling
        update: dict[str, Any] = {}
        if request.temperature is None:
            update["temperature"] = sampling.temperature
        if request.top_p is None:
            update["top_p"] = sampling.top_p
        if request.token_limit is None:
            update["max_tokens"] = sampling.max_tokens
        if request.seed is None and sampling.seed is not None:
            update["seed"] = sampling.seed
        return request.model_copy(update=update) if update else request

    def _plan(self, route: str, options: FusionOptions, request: ChatRequest) -> list[MemberPlan]:
        default = self.config.default_endpoint
        if route == "single":
            # A request for an endpoint id (not a fusionkit/* model) arrives as single on that endpoint.
            chosen = options.panel_models[0] if options.mode == "single" and options.panel_models else default
            return [MemberPlan(candidate_id="c1", endpoint_id=chosen)]
        if route == "self":
            count = options.sample_count or self.config.sample_count
            temps = self.config.self_temperatures or [request.temperature or 0.7]
            return [
                MemberPlan(
                    candidate_id=f"c{i + 1}",
                    endpoint_id=default,
                    temperature=temps[i % len(temps)],
                    seed=None if request.seed is None else request.seed + i,
                )
                for i in range(count)
            ]
        members = options.panel_models or self.config.panel_members
        unknown = [m for m in members if m not in self.clients]
        if unknown:
            raise bad_request(
                f"fusion.panel_models names unknown endpoints {unknown}; allowed: {', '.join(self.clients)}",
                param="fusion.panel_models",
                code="unknown_endpoint",
            )
        return [MemberPlan(candidate_id=f"c{i + 1}", endpoint_id=m) for i, m in enumerate(members)]

    # -- model calls ------------------------------------------------------------------------------

    def _context(self, run: _Run, candidate_id: str | None) -> CallContext:
        return CallContext(
            trace_id=run.recorder.trace_id, span_id=f"{run.recorder.run_id}.{run.calls}", candidate_id=candidate_id
        )

    def _account(self, run: _Run, endpoint_id: str, usage: Usage | None) -> None:
        if usage is None:
            return
        run.usage = run.usage + usage
        pricing = self.clients[endpoint_id].endpoint.pricing
        if pricing.input_per_1m_tokens is None or pricing.output_per_1m_tokens is None:
            run.cost_known = run.cost_known and self.clients[endpoint_id].endpoint.is_mock
            return
        run.cost += (
            usage.prompt_tokens * pricing.input_per_1m_tokens + usage.completion_tokens * pricing.output_per_1m_tokens
        ) / 1_000_000

    async def _call(
        self,
        run: _Run,
        role: str,
        endpoint_id: str,
        request: ChatRequest,
        *,
        candidate_id: str | None = None,
        stream_to: Emit | None = None,
        timeout_s: float | None = None,
    ) -> ChatCompletion:
        """One recorded model call; with `stream_to`, its text deltas are forwarded as they arrive."""
        client = self.clients[endpoint_id]
        run.calls += 1
        call = {"call": run.calls, "role": role, "endpoint_id": endpoint_id, "candidate_id": candidate_id}
        await run.recorder.event("model_call.started", call)
        started = time.perf_counter()
        ctx = self._context(run, candidate_id)
        outgoing = request.model_copy(update={"model": endpoint_id})
        # Retries must not sleep past this call's own limit: a member that keeps failing reports its error.
        deadline = run.deadline
        if timeout_s is not None:
            deadline = min(deadline or float("inf"), time.monotonic() + timeout_s)
        try:
            async with asyncio.timeout(timeout_s):
                if stream_to is None:
                    completion = await client.complete(outgoing, ctx, deadline=deadline)
                else:
                    acc = StreamAccumulator()
                    streamed = outgoing.model_copy(update={"stream": True})
                    async for chunk in client.stream(streamed, ctx, deadline=deadline):
                        text = acc.add(chunk)
                        if text:
                            await stream_to(TextDelta(text))
                    if acc.finish_reason is None:
                        # A stream that stops without saying it finished is a failure, not a short answer.
                        raise upstream_failure(f"{role} {endpoint_id}: the stream ended before the answer was complete")
                    completion = acc.completion(model=endpoint_id)
        except TimeoutError:
            error = timed_out(f"{role} {endpoint_id} timed out after {timeout_s}s (panel.member_timeout_s)")
            await run.recorder.event(
                "model_call.failed",
                {**call, "status": error.status, "reason": error.message, "latency_ms": _ms_since(started)},
            )
            raise error from None
        except APIError as error:
            await run.recorder.event(
                "model_call.failed",
                {**call, "status": error.status, "reason": error.message, "latency_ms": _ms_since(started)},
            )
            raise
        self._account(run, endpoint_id, completion.usage)
        await run.recorder.event(
            "model_call.completed",
            {
                **call,
                "latency_ms": _ms_since(started),
                "finish_reason": completion.choices[0].finish_reason,
                "usage": (completion.usage or Usage()).model_dump(),
            },
        )
        return completion

    async def _member(self, request: ChatRequest, plan: MemberPlan, run: _Run) -> Candidate | None:
        update: dict[str, Any] = {"stream": False, "stream_options": None}
        if plan.temperature is not None:
            update["temperature"] = plan.temperature
        if plan.seed is not None:
            update["seed"] = plan.seed
        started = time.perf_counter()
        # Its own message list: tool rounds extend this member's conversation only.
        member_request = request.model_copy(update={**update, "messages": list(request.messages)})
        try:
            completion = await self._ask_member(run, plan, member_request)
            while run.pauses is not None and completion.message.tool_calls:
                completion = await self._resume_after_tools(run, plan, member_request, completion)
        except APIError as error:
            await self._drop(run, plan, error.message, error.status)
            return None
        except ToolRefused as refused:
            await self._drop(run, plan, f"{refused.code}: {refused}", None)
            return None
        candidate = self._candidate(plan, completion, _ms_since(started))
        if candidate.is_empty:
            await self._drop(run, plan, "returned an empty answer", None)
            return None
        offered = {t.function.name for t in request.tools or []}
        foreign = [c.function.name for c in candidate.tool_calls if c.function.name not in offered]
        if foreign:
            await self._drop(run, plan, f"proposed tool '{foreign[0]}', which the request does not offer", None)
            return None
        candidate.artifact_sha256 = await run.recorder.artifact(candidate.text or candidate.model_dump_json())
        await run.recorder.event(
            "candidate.recorded",
            candidate.model_dump(
                include={
                    "candidate_id",
                    "endpoint_id",
                    "model",
                    "finish_reason",
                    "latency_ms",
                    "artifact_sha256",
                    "tool_calls",
                }
            ),
        )
        return candidate

    async def _resume_after_tools(
        self, run: _Run, plan: MemberPlan, member_request: ChatRequest, completion: ChatCompletion
    ) -> ChatCompletion:
        """Pause for the member's tool calls, then let it continue with the results in its conversation."""
        assert run.pauses is not None
        calls = completion.message.tool_calls or []
        outputs = await run.pauses.request(plan.candidate_id, plan.endpoint_id, calls)
        turn = [
            ChatMessage(role="assistant", content=completion.message.content, tool_calls=calls),
            *(ChatMessage(role="tool", tool_call_id=c.id, content=out) for c, out in zip(calls, outputs, strict=True)),
        ]
        member_request.messages.extend(turn)
        return await self._ask_member(run, plan, member_request)

    async def _ask_member(self, run: _Run, plan: MemberPlan, request: ChatRequest) -> ChatCompletion:
        """One call of a panel member, first or after tool results, under `panel.member_timeout_s`."""
        return await self._call(
            run,
            "panel",
            plan.endpoint_id,
            request,
            candidate_id=plan.candidate_id,
            timeout_s=self.config.panel.member_timeout_s,
        )

    def _candidate(self, plan: MemberPlan, completion: ChatCompletion, latency_ms: float) -> Candidate:
        message = completion.message
        return Candidate(
            candidate_id=plan.candidate_id,
            endpoint_id=plan.endpoint_id,
            model=self.clients[plan.endpoint_id].endpoint.model,
            text=message.content or "",
            tool_calls=message.tool_calls or [],
            finish_reason=completion.choices[0].finish_reason,
            usage=completion.usage or Usage(),
            latency_ms=latency_ms,
        )

    async def _drop(self, run: _Run, plan: MemberPlan, reason: str, status: int | None) -> None:
        run.failed.append(
            FailedMember(endpoint_id=plan.endpoint_id, candidate_id=plan.candidate_id, reason=reason, status=status)
        )
        await run.recorder.event(
            "candidate.dropped", {"candidate_id": plan.candidate_id, "endpoint_id": plan.endpoint_id, "reason": reason}
        )

    async def _panel(self, request: ChatRequest, plans: list[MemberPlan], run: _Run) -> list[Candidate]:
        results = await asyncio.gather(*(self._member(request, plan, run) for plan in plans))
        return [c for c in results if c is not None]

    # -- modes ------------------------------------------------------------------------------------

    async def _single(
        self, request: ChatRequest, plan: MemberPlan, run: _Run, mode: str, reasons: list[str]
    ) -> FusionResult:
        started = time.perf_counter()
        completion = await self._call(
            run,
            "single",
            plan.endpoint_id,
            request,
            candidate_id=plan.candidate_id,
            stream_to=run.send if request.stream else None,
        )
        run.latency_ms["single"] = _ms_since(started)
        message = completion.message
        candidate = self._candidate(plan, completion, run.latency_ms["single"])
        decision = DecisionInfo(type="select_candidate", reason="single_mode", selected_candidate_id="c1")
        return await self._finish(
            run,
            mode,
            "single",
            reasons,
            [candidate],
            decision,
            message,
            {},
            finish_reason=completion.choices[0].finish_reason or "stop",
        )

    async def _decide(
        self, request: ChatRequest, candidates: list[Candidate], run: _Run, options: FusionOptions
    ) -> tuple[DecisionInfo, AssistantMessage, dict[str, Any]]:
        """Judge and synthesize, unless the candidates make that unnecessary or the budget forbids it."""
        if len(candidates) == 1:
            return await self._select(run, candidates[0], "only_one_candidate")
        if same_tool_calls(candidates):
            return await self._select(run, candidates[0], "unanimous_tool_call")
        if unanimous(candidates):
            return await self._select(run, candidates[0], "unanimous")
        max_cost = self.config.budget.max_cost
        if max_cost is not None and run.cost > max_cost:
            await run.recorder.event("budget.exceeded", {"budget": "max_cost", "limit": max_cost, "cost": run.cost})
            return await self._select(run, candidates[0], "budget_max_cost")
        if request.tools and run.pauses is None:
            # With external tool execution the members already did the tool work; their answers are fused as text.
            return await self._agent_step(request, candidates, run, self.config.synthesizer)
        return await self._judge_and_synthesize(request, candidates, run, self.config.judge, self.config.synthesizer)

    async def _judge_and_synthesize(
        self,
        request: ChatRequest,
        candidates: list[Candidate],
        run: _Run,
        judge_id: str,
        synth_id: str,
        best: Callable[[list[Candidate], JudgeAnalysis | None], Candidate] | None = None,
    ) -> tuple[DecisionInfo, AssistantMessage, dict[str, Any]]:
        """The judge compares, the synthesizer writes; an empty or failed synthesis falls back to `best`."""
        await run.recorder.transition("judging")
        await run.send(Phase("judging"))
        started = time.perf_counter()
        structured = self.clients[judge_id].endpoint.supports_structured_output()
        try:
            judged_text = (
                await self._call(
                    run, "judge", judge_id, judge_request(judge_id, request, candidates, structured=structured)
                )
            ).text
            analysis, parse_error = parse_analysis(judged_text)
        except APIError as error:
            # Without an analysis the synthesizer still has the candidates: degrade, do not fail.
            judged_text, analysis, parse_error = "", None, f"the judge call failed: {error.message}"
        run.latency_ms["judge"] = _ms_since(started)
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
        meta: dict[str, Any] = {"judge_model_id": judge_id, "judge_parse_error": parse_error}

        meta["analysis"] = analysis
        await run.recorder.transition("synthesizing")
        await run.send(Phase("synthesizing"))
        started = time.perf_counter()
        synth = synthesis_request(synth_id, request, candidates, analysis, judged_text)
        streamed = False

        async def forward(event: EngineEvent) -> None:
            nonlocal streamed
            streamed = True
            await run.send(event)

        meta["synthesizer_model_id"] = synth_id
        try:
            text = (
                await self._call(run, "synthesizer", synth_id, synth, stream_to=forward if request.stream else None)
            ).text
        except APIError as error:
            if streamed:
                raise  # part of an answer is already with the client: nothing else can follow it
            text, reason = "", f"synthesizer_failed: {error.message}"
        else:
            reason = "empty_synthesis"
        run.latency_ms["synthesis"] = _ms_since(started)
        if not text.strip():
            fallback = (best or _best)(candidates, analysis)
            await run.recorder.event(
                "synthesis.empty", {"fallback_candidate_id": fallback.candidate_id, "reason": reason}
            )
            decision, message, _ = await self._select(run, fallback, reason.split(":")[0])
            return decision, message, meta
        sha = await run.recorder.artifact(text)
        await run.recorder.event("synthesis.completed", {"artifact_sha256": sha, "chars": len(text)})
        decision = DecisionInfo(
            type="synthesize",
            reason="judged_and_synthesized",
            selected_candidate_id=analysis.best_candidate_id if analysis else None,
        )
        return decision, AssistantMessage(content=text), meta

    async def _agent_step(
        self,
        request: ChatRequest,
        candidates: list[Candidate],
        run: _Run,
        model_id: str,
        best: Callable[[list[Candidate], JudgeAnalysis | None], Candidate] | None = None,
    ) -> tuple[DecisionInfo, AssistantMessage, dict[str, Any]]:
        """With tools, `model_id` takes the turn itself (text or calls), the candidates as reference."""
        await run.recorder.transition(
            "synthesizing", {"reason": "the agent step is taken with the proposals as reference"}
        )
        await run.send(Phase("synthesizing"))
        synth_id = model_id
        started = time.perf_counter()
        answered = await self._call(
            run,
            "synthesizer",
            synth_id,
            agent_request(synth_id, request, candidates),
            stream_to=run.send if request.stream else None,
        )
        run.latency_ms["synthesis"] = _ms_since(started)
        message = answered.message
        if not (message.content or "").strip() and not message.tool_calls:
            fallback = best(candidates, None) if best is not None else candidates[0]
            await run.recorder.event("synthesis.empty", {"fallback_candidate_id": fallback.candidate_id})
            decision, message, _ = await self._select(run, fallback, "empty_synthesis")
            return decision, message, {"synthesizer_model_id": synth_id}
        await run.recorder.event(
            "synthesis.completed",
            {
                "chars": len(message.content or ""),
                "tool_calls": [c.model_dump() for c in message.tool_calls or []],
            },
        )
        return DecisionInfo(type="synthesize", reason="agent_step"), message, {"synthesizer_model_id": synth_id}

    async def _select(
        self, run: _Run, candidate: Candidate, reason: str
    ) -> tuple[DecisionInfo, AssistantMessage, dict[str, Any]]:
        if run.emit is not None and candidate.text:
            await run.send(TextDelta(candidate.text))
        message = AssistantMessage(content=candidate.text or None, tool_calls=candidate.tool_calls or None)
        return (
            DecisionInfo(type="select_candidate", reason=reason, selected_candidate_id=candidate.candidate_id),
            message,
            {},
        )

    async def _verify(self, request: ChatRequest, message: AssistantMessage, run: _Run) -> dict[str, Any]:
        await run.recorder.transition("verifying")
        await run.send(Phase("verifying"))
        judge_id = self.config.judge
        started = time.perf_counter()
        checked = await self._call(
            run, "verifier", judge_id, verifier_request(judge_id, request, message.content or "")
        )
        run.latency_ms["verify"] = _ms_since(started)
        verdict = parse_verdict(checked.text)
        await run.recorder.event("verification.completed", {"verifier_model_id": judge_id, **verdict})
        return {"verifier_model_id": judge_id, **verdict}

    async def _finish(
        self,
        run: _Run,
        mode: str,
        route: str,
        reasons: list[str],
        candidates: list[Candidate],
        decision: DecisionInfo,
        message: AssistantMessage,
        meta: dict[str, Any],
        finish_reason: str | None = None,
    ) -> FusionResult:
        await run.recorder.event("decision", decision.model_dump())
        run.latency_ms["total"] = _ms_since(run.started)
        finish = finish_reason or ("tool_calls" if message.tool_calls else "stop")
        metadata = FusionMetadata(
            run_id=run.recorder.run_id,
            trace_id=run.recorder.trace_id,
            state="completed",
            status="succeeded",
            event_cursor=0,
            mode=mode,
            route=route,
            route_reasons=reasons,
            candidate_count=len(candidates),
            candidate_model_ids=[c.endpoint_id for c in candidates],
            failed_members=run.failed,
            decision=decision,
            judge_model_id=meta.get("judge_model_id"),
            synthesizer_model_id=meta.get("synthesizer_model_id"),
            judge_parse_error=meta.get("judge_parse_error"),
            verification=meta.get("verification"),
            cost_estimate={"amount": round(run.cost, 6), "currency": "USD", "complete": run.cost_known},
            latency_ms=run.latency_ms,
            mock=any(
                c.endpoint_id in self.clients and self.clients[c.endpoint_id].endpoint.is_mock for c in candidates
            ),
        )
        return FusionResult(message=message, finish_reason=finish, usage=run.usage, metadata=metadata)


def _best(candidates: list[Candidate], analysis: JudgeAnalysis | None) -> Candidate:
    if analysis is not None:
        by_id = {c.candidate_id: c for c in candidates}
        for cid in [analysis.best_candidate_id, *analysis.ranking]:
            if cid in by_id:
                return by_id[cid]
    return candidates[0]


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)
