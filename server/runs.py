"""Runs as the router records them: the engine's Recorder over the run store and the trace emitter.

runs = RunService(store, tracer)
recorder = await runs.start(mode="panel", request=body)
task = runs.launch(engine, recorder, engine.plan(chat_request, options))   # completed / failed / cancelled recorded
result = await task
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from bridge.errors import APIError, bad_request
from bridge.http import validation_error
from bridge.tracing import Component, TraceEmitter, new_span_id, new_trace_id
from server.engine import Emit, FusionEngine, FusionResult, RunPlan
from server.engine.pauses import ToolPauses, ToolResult
from server.store import TERMINAL_STATES, IdempotencyConflict, RunRecord, RunStore, new_run_id

__all__ = ["RunRecorder", "RunService"]

log = logging.getLogger("fusionkit.router")

# Which trace component an engine event belongs to (SPEC §12).
_COMPONENT: dict[str, Component] = {
    "panel": "panel-model",
    "single": "panel-model",
    "judge": "judge",
    "synthesizer": "synthesis",
    "verifier": "judge",
}
# Model calls carry fusionkit 0.1's trace event names; everything else keeps the run event's name.
_TRACE_NAMES = {
    "model_call.started": "model.call.started",
    "model_call.completed": "model.call.finished",
    "model_call.failed": "model.call.finished",
}


class RunRecorder:
    """Records one run in the store and, when tracing is on, as trace events.

    The recorder owns its run's event numbering (seq 1 is the store's `run.created`), so events and
    intermediate states are queued without waiting: they are written in order with the store's next
    batch, and the engine never waits on SQLite between model calls. Ending states are awaited: a
    run is not reported finished before its end is on disk.
    """

    def __init__(self, store: RunStore, tracer: TraceEmitter, run_id: str, trace_id: str) -> None:
        self.store = store
        self.tracer = tracer
        self.run_id = run_id
        self.trace_id = trace_id
        self.root_span = new_span_id()
        self.seq = 1

    async def transition(
        self,
        state: str,
        payload: dict[str, Any] | None = None,
        summary: dict[str, Any] | None = None,
        terminal_reason: str | None = None,
    ) -> int:
        self.seq += 1
        if state in TERMINAL_STATES or summary is not None or terminal_reason is not None:
            await self.store.transition(
                self.run_id,
                state,
                payload=payload,
                summary_update=summary,
                terminal_reason=terminal_reason,
                seq=self.seq,
            )
        else:
            self.store.record_transition(self.run_id, self.seq, state, payload)
        self._trace("run.state", {"state": state, **(payload or {})})
        return self.seq

    async def event(self, type: str, payload: dict[str, Any]) -> int:
        self.seq += 1
        self.store.record_event(self.run_id, self.seq, type, payload)
        self._trace(type, payload)
        return self.seq

    async def artifact(self, content: str, media_type: str = "text/plain") -> str:
        return self.store.record_artifact(content, media_type, self.run_id)

    def trace_started(self, mode: str) -> None:
        """The run's root span: every other event of the run names it as its parent."""
        if self.tracer.enabled:
            self.tracer.emit(
                trace_id=self.trace_id,
                span_id=self.root_span,
                component="router",
                event_type="run.started",
                payload={"run_id": self.run_id, "mode": mode},
            )

    def _trace(self, type: str, payload: dict[str, Any]) -> None:
        if not self.tracer.enabled:
            return
        self.tracer.emit(
            trace_id=self.trace_id,
            # A model call's events share its span, which the router also sends to the bridge it calls.
            span_id=payload.get("span_id") or new_span_id(),
            parent_span_id=self.root_span,
            component=_COMPONENT.get(str(payload.get("role")), "router"),
            event_type=_TRACE_NAMES.get(type, type),
            candidate_id=payload.get("candidate_id"),
            model_id=payload.get("endpoint_id"),
            payload={"run_id": self.run_id, **payload},
        )


class ToolResultsBody(BaseModel):
    tool_results: list[ToolResult]


@dataclass
class _Active:
    """A run executing in this router: its task, its tool pauses, and why it would be cancelled."""

    pauses: ToolPauses | None
    task: asyncio.Task[FusionResult] = field(init=False)
    cancel_reason: str = "client_disconnected"


class RunService:
    """Creates runs, runs them as tasks it can cancel, and records how they end, whatever way they end."""

    duplicate_errors = (IdempotencyConflict,)

    def __init__(self, store: RunStore, tracer: TraceEmitter) -> None:
        self.store = store
        self.tracer = tracer
        self.active: dict[str, _Active] = {}

    def launch(
        self,
        engine: FusionEngine,
        recorder: RunRecorder,
        plan: RunPlan,
        emit: Emit | None = None,
    ) -> asyncio.Task[FusionResult]:
        """Start a planned fusion run as a task; external tool execution gets its pause registry here."""
        policy = plan.options.tool_execution
        tools = plan.request.tools
        pauses = None
        if policy is not None and policy.mode == "external" and tools:
            pauses = ToolPauses(recorder, policy, tools, engine.config.budget)
        return self.launch_work(recorder, lambda: engine.run(plan, recorder, emit, pauses), pauses)

    def launch_work(
        self,
        recorder: RunRecorder,
        work: Callable[[], Coroutine[Any, Any, FusionResult]],
        pauses: ToolPauses | None = None,
    ) -> asyncio.Task[FusionResult]:
        """Run any recorded work (a fusion run, a trajectory fusion) as a task this service can cancel."""
        active = _Active(pauses=pauses)
        active.task = asyncio.create_task(self._execute(recorder, work(), lambda: active.cancel_reason))
        self.active[recorder.run_id] = active
        active.task.add_done_callback(lambda _: self.active.pop(recorder.run_id, None))
        return active.task

    @staticmethod
    async def wait(task: asyncio.Task[FusionResult]) -> None:
        """Wait for a run without tying its life to the waiting request (native runs end only by cancel)."""
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(task)

    async def cancel(self, run_id: str) -> bool:
        active = self.active.get(run_id)
        if active is None:
            return False
        active.cancel_reason = "cancel_requested"
        active.task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await active.task
        return True

    def pending_action(self, run_id: str) -> dict[str, Any] | None:
        active = self.active.get(run_id)
        if active is None or active.pauses is None or not active.pauses.pending:
            return None
        return {"type": "submit_tool_results", "tool_calls": active.pauses.plan()}

    async def submit_tool_results(self, record: RunRecord, raw: bytes) -> dict[str, Any]:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise bad_request("request body is not valid JSON", code="invalid_json") from None
        try:
            body = ToolResultsBody.model_validate(data)
        except ValidationError as exc:
            raise validation_error(exc) from None
        active = self.active.get(record.run_id)
        if active is None or active.pauses is None:
            raise APIError(
                409,
                f"run '{record.run_id}' is {record.state}, not waiting for tool results",
                type="invalid_request_error",
                code="run_not_waiting",
            )
        return await active.pauses.submit(body.tool_results)

    async def start(
        self,
        *,
        mode: str,
        request: dict[str, Any],
        trace_id: str | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> RunRecorder:
        run_id = new_run_id()
        trace = trace_id or new_trace_id()
        await self.store.create_run(
            run_id,
            mode=mode,
            request=request,
            trace_id=trace,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        recorder = RunRecorder(self.store, self.tracer, run_id, trace)
        recorder.trace_started(mode)
        return recorder

    async def _execute(
        self, recorder: RunRecorder, work: Coroutine[Any, Any, FusionResult], cancel_reason: Callable[[], str]
    ) -> FusionResult:
        try:
            result = await work
        except APIError as error:
            await self._end(recorder, "failed", {"error": error.body()["error"], "status": error.status})
            raise
        except asyncio.CancelledError:
            reason = cancel_reason()
            await asyncio.shield(self._end(recorder, "cancelled", {"reason": reason}, reason))
            raise
        except Exception as exc:
            log.exception("run %s failed unexpectedly", recorder.run_id)
            await self._end(recorder, "failed", {"error": {"message": f"internal error: {type(exc).__name__}"}})
            raise
        summary = {
            "route": result.route,
            "models": [c.endpoint_id for c in result.candidates],
            "decision": result.decision.model_dump(),
            "latency_ms": result.latency_ms,
            "cost_estimate": asdict(result.cost),
            "usage": result.usage.model_dump(),
            "final_output": result.message.model_dump(exclude_none=True),
            "failed_members": [f.model_dump() for f in result.failed],
        }
        result.event_cursor = await recorder.transition(
            "completed", {"decision": summary["decision"]}, summary=summary, terminal_reason="completed"
        )
        return result

    async def _end(self, recorder: RunRecorder, state: str, payload: dict[str, Any], reason: str | None = None) -> None:
        try:
            await recorder.transition(state, payload, summary=payload, terminal_reason=reason or state)
        except Exception:
            log.exception("could not record the end of run %s", recorder.run_id)
