"""One run's bookkeeping (`RunState`) and the one way the engine calls a model (`ModelCalls.call`).

    calls = ModelCalls(clients)
    completion = await calls.call(run, "judge", "careful", judge_request)   # recorded, timed, costed

Every model call of a run, whatever its role, goes through `call`: it is recorded as
`model_call.started` / `.completed` / `.failed` events with its own trace span (sent to the
endpoint, so a bridge's events hang under it), bounded by a timeout when one is given, streamed
to the client when asked, and its usage and cost are added to the run's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from bridge.adapters import CallContext
from bridge.errors import APIError, timed_out
from bridge.protocol import ChatCompletion, ChatRequest, Usage
from bridge.stream import StreamAccumulator
from bridge.tracing import new_span_id
from server.clients import EndpointClient
from server.engine.events import EngineEvent, Reasoning, TextDelta
from server.engine.pauses import ToolPauses
from server.engine.recorder import Recorder
from server.engine.result import CostEstimate
from server.engine.stops import StopCutter
from server.prompt_files import PromptSet
from server.protocol.chat import FailedMember

__all__ = ["Emit", "ModelCalls", "RunState", "ms_since"]

Emit = Callable[[EngineEvent], Awaitable[None]]
# Where a call's text goes as it arrives: an Emit, or `RunState.send` (which says whether it went).
StreamTo = Callable[[EngineEvent], Awaitable[object]]


def ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


@dataclass
class RunState:
    """The bookkeeping of one run as it goes: usage and cost, phase latencies, dropped members, and
    the client's stream (the answer's text cut at the client's stop sequences on its way out)."""

    recorder: Recorder
    emit: Emit | None
    deadline: float | None
    stops: StopCutter = field(default_factory=lambda: StopCutter([]))
    pauses: ToolPauses | None = None
    started: float = field(default_factory=time.perf_counter)
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    cost_known: bool = True
    latency_ms: dict[str, float] = field(default_factory=dict)
    failed: list[FailedMember] = field(default_factory=list)
    calls: int = 0
    mock_used: bool = False
    prompts: PromptSet | None = None  # the request's own prompts (`fusion.prompts`); None: the router's
    show_reasoning: bool = False  # `fusion.show_reasoning`: the client is told what the run is doing
    # The answer goes to the client whole, once it is final (structured output: it must be checked first).
    hold_answer: bool = False

    async def reason(self, text: str) -> None:
        """Tell a client that asked to see the run's reasoning (streaming only: a whole answer has no place for it)."""
        if self.show_reasoning and self.emit is not None:
            await self.emit(Reasoning(text))

    @property
    def streaming(self) -> bool:
        return self.emit is not None

    async def send(self, event: EngineEvent) -> bool:
        """Pass `event` to the client; False when none of it went (no client, the answer held, text held back
        as the possible start of a stop sequence)."""
        if self.emit is None:
            return False
        if isinstance(event, TextDelta):
            if self.hold_answer:
                return False
            text = self.stops.feed(event.text)
            if not text:
                return False
            event = TextDelta(text, event.logprobs)
        await self.emit(event)
        return True

    async def flush_text(self) -> None:
        """Send what the stop cutter held back, once the answer is complete."""
        tail = self.stops.flush()
        if tail and self.emit is not None:
            await self.emit(TextDelta(tail))

    def cost_estimate(self, currency: str) -> CostEstimate:
        return CostEstimate(amount=round(self.cost, 6), currency=currency, complete=self.cost_known)


class ModelCalls:
    """The engine's model calls: recorded, traced, timed, streamed on request, and costed."""

    def __init__(self, clients: dict[str, EndpointClient]) -> None:
        self.clients = clients

    async def call(
        self,
        run: RunState,
        role: str,
        endpoint_id: str,
        request: ChatRequest,
        *,
        candidate_id: str | None = None,
        stream_to: StreamTo | None = None,
        timeout_s: float | None = None,
    ) -> ChatCompletion:
        """One recorded model call; with `stream_to`, its text deltas are forwarded as they arrive."""
        client = self.clients[endpoint_id]
        run.mock_used = run.mock_used or client.endpoint.is_mock
        run.calls += 1
        # The call's span: the router's trace events for it carry it, and the bridge names it as its parent.
        span_id = new_span_id()
        call = {
            "call": run.calls,
            "role": role,
            "endpoint_id": endpoint_id,
            "candidate_id": candidate_id,
            "span_id": span_id,
        }
        await run.recorder.event("model_call.started", call)
        started = time.perf_counter()
        ctx = CallContext(
            trace_id=run.recorder.trace_id, span_id=span_id, candidate_id=candidate_id, sampled=run.recorder.sampled
        )
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
                    completion = await self._streamed(client, outgoing, ctx, deadline, stream_to)
        except TimeoutError:
            error = timed_out(f"{role} {endpoint_id} timed out after {timeout_s}s (panel.member_timeout_s)")
            await self._failed(run, call, started, error)
            raise error from None
        except APIError as error:
            await self._failed(run, call, started, error)
            raise
        except asyncio.CancelledError:
            # Cut off (a late member, the wall clock, a client gone): the call ends in the record too.
            await self._failed(run, call, started, APIError(499, "cancelled", type="cancelled", code="cancelled"))
            raise
        self._account(run, client, completion.usage)
        await run.recorder.event(
            "model_call.completed",
            {
                **call,
                "latency_ms": ms_since(started),
                "finish_reason": completion.choices[0].finish_reason,
                "usage": (completion.usage or Usage()).model_dump(),
            },
        )
        return completion

    @staticmethod
    async def _streamed(
        client: EndpointClient,
        request: ChatRequest,
        ctx: CallContext,
        deadline: float | None,
        stream_to: StreamTo,
    ) -> ChatCompletion:
        acc = StreamAccumulator()
        async for chunk in client.stream(request.model_copy(update={"stream": True}), ctx, deadline=deadline):
            text = acc.add(chunk)
            if text:
                await stream_to(TextDelta(text, chunk.choices[0].logprobs))
        return acc.completion(model=request.model)

    @staticmethod
    async def _failed(run: RunState, call: dict[str, object], started: float, error: APIError) -> None:
        await run.recorder.event(
            "model_call.failed",
            {**call, "status": error.status, "reason": error.message, "latency_ms": ms_since(started)},
        )

    @staticmethod
    def _account(run: RunState, client: EndpointClient, usage: Usage | None) -> None:
        if usage is None:
            return
        run.usage = run.usage + usage
        pricing = client.endpoint.pricing
        if pricing.input_per_1m_tokens is None or pricing.output_per_1m_tokens is None:
            run.cost_known = run.cost_known and client.endpoint.is_mock
            return
        run.cost += (
            usage.prompt_tokens * pricing.input_per_1m_tokens + usage.completion_tokens * pricing.output_per_1m_tokens
        ) / 1_000_000
