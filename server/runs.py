"""Runs as the router records them: the engine's Recorder over the run store and the trace emitter.

runs = RunService(store, tracer)
recorder = await runs.start(mode="panel", request=body)
task = runs.launch(engine, recorder, engine.plan(chat_request, options))   # completed / failed / cancelled recorded
if await runs.wait_settled(recorder.run_id) == "paused":      # waiting for external tool results
    ...
result = await task
await runs.stop()                                              # the router stops: what still runs is expired

A run whose record cannot be written (the store is unavailable) still runs and answers: the
store records it as failed (`store_unavailable`) once it can be written again.

On a store shared by several routers (PostgreSQL), a cancel or a tool result for a run another
router executes is sent to that router through the store's relay and answered with its reply, and
waiting for such a run follows its events in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bridge.errors import APIError, not_found
from bridge.tracing import (
    Component,
    TraceEmitter,
    TraceParent,
    incoming_traceparent,
    joined_trace,
    new_span_id,
    new_trace_id,
)
from server.engine import Emit, FusionEngine, FusionResult, RunPlan
from server.engine.pauses import ToolPauses, ToolResult
from server.observe.watch import RunObserver, RunWatch
from server.protocol.native import ToolResultSubmission
from server.store import (
    TERMINAL_STATES,
    IdempotencyConflict,
    RunFinished,
    RunRecord,
    RunStoreAPI,
    StoreError,
    StoreUnavailable,
    new_run_id,
)
from server.store.relay import Command, OwnerGone, OwnerSilent, Reply

__all__ = ["RELAY_WAIT_S", "ROUTER_STOPPED", "RunRecorder", "RunService"]

log = logging.getLogger("fusionkit.router")

# Why a run still executing when its router stops ends `expired` (not `cancelled`: nobody asked for it).
ROUTER_STOPPED = "router_stopped"
# How long a router waits for the router executing a run to carry out a cancel or a tool result it sent.
RELAY_WAIT_S = 10.0
# How long one wait on the store for another router's run lasts before the run is looked at again.
FOLLOW_S = 30.0

# Which trace component an engine event belongs to.
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
    """Records one run in the store and, when tracing is on, as trace events; shows each step to its
    `watch` (metrics and OpenTelemetry spans, `server.observe`) when something watches.

    The recorder owns its run's event numbering (seq 1 is the store's `run.created`), so events and
    intermediate states are queued without waiting: they are written in order with the store's next
    batch, and the engine never waits on SQLite between model calls. Ending states are awaited: a
    run is not reported finished before its end is on disk.

    Once the store could not take one of its writes (`lost`), the recorder sends nothing more: the
    store records the run as failed when it can, and the run goes on to answer its caller.
    """

    def __init__(
        self, store: RunStoreAPI, tracer: TraceEmitter, run_id: str, trace_id: str, observer: RunObserver | None = None
    ) -> None:
        self.store = store
        self.tracer = tracer
        self.run_id = run_id
        self.trace_id = trace_id
        self.root_span = new_span_id()
        self.seq = 1
        self.lost = False
        self.observer = observer
        self.watch: RunWatch | None = None
        self.sampled = True

    def _lose(self) -> None:
        self.lost = True

    async def transition(
        self,
        state: str,
        payload: dict[str, Any] | None = None,
        summary: dict[str, Any] | None = None,
        terminal_reason: str | None = None,
    ) -> int:
        """Record a state change; an ending one is awaited. A store that cannot be written is not the run's
        failure (it is recorded as failed later); a run that has ended elsewhere raises RunFinished."""
        self.seq += 1
        if self.watch is not None:
            self.watch.transition(state, payload, summary)
        awaited = state in TERMINAL_STATES or summary is not None or terminal_reason is not None
        if self.lost:
            pass  # the store records this run as failed; nothing more of it is written
        elif awaited:
            with contextlib.suppress(StoreUnavailable):
                await self.store.transition(
                    self.run_id,
                    state,
                    event_type="run.expired" if state == "expired" else "run.state",
                    payload=payload,
                    summary_update=summary,
                    terminal_reason=terminal_reason,
                    seq=self.seq,
                    lost=self._lose,
                )
        else:
            self.store.record_transition(self.run_id, self.seq, state, payload, lost=self._lose)
        self._trace("run.state", {"state": state, **(payload or {})})
        return self.seq

    async def event(self, type: str, payload: dict[str, Any]) -> int:
        self.seq += 1
        if self.watch is not None:
            self.watch.event(type, payload)
        if not self.lost:
            self.store.record_event(self.run_id, self.seq, type, payload, lost=self._lose)
        self._trace(type, payload)
        return self.seq

    async def artifact(self, content: str, media_type: str = "text/plain") -> str:
        return self.store.record_artifact(content, media_type, self.run_id, lost=self._lose)

    def trace_started(self, mode: str, request: dict[str, Any] | None = None) -> None:
        """The run's root span: every other event of the run names it as its parent."""
        if self.observer is not None:
            self.watch = self.observer.watch(
                run_id=self.run_id, trace_id=self.trace_id, root_span_id=self.root_span, mode=mode, request=request
            )
        spans = self.watch.spans if self.watch is not None else None
        if spans is not None:
            self.sampled = spans.on  # the sampler's answer, which the bridges' spans follow
        elif (client := joined_trace(self.trace_id)) is not None:
            self.sampled = client.sampled  # not tracing here: the client's choice passes through
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


@dataclass
class _Active:
    """A run executing in this router: its task, its tool pauses, and why it would be cancelled."""

    pauses: ToolPauses | None
    task: asyncio.Task[FusionResult] = field(init=False)
    cancel_reason: str = "client_disconnected"


async def _no_executor() -> FusionResult:
    raise APIError(
        400,
        "tool_execution.mode 'executor' (tool_policy 'allowed') needs a tool executor, and this router has none: "
        "use 'external' ('external_pause') to run the tools yourself, or 'disabled'",
        type="invalid_request_error",
        code="executor_not_configured",
        param="tool_execution.mode",
    )


class RunService:
    """Creates runs, runs them as tasks it can cancel, and records how they end, whatever way they end."""

    duplicate_errors = (IdempotencyConflict,)

    def __init__(self, store: RunStoreAPI, tracer: TraceEmitter, observer: RunObserver | None = None) -> None:
        self.store = store
        self.tracer = tracer
        self.observer = observer
        self.active: dict[str, _Active] = {}
        if store.relay is not None:
            store.relay.serve(self._carry_out)

    def launch(
        self,
        engine: FusionEngine,
        recorder: RunRecorder,
        plan: RunPlan,
        emit: Emit | None = None,
    ) -> asyncio.Task[FusionResult]:
        """Start a planned fusion run as a task; external tool execution gets its pause registry here.

        A request that asks for tools to be executed by the router (`executor`) fails at once with
        `executor_not_configured`, as the seed answers: this router has no executor.
        """
        if emit is not None and recorder.watch is not None:
            emit = recorder.watch.streaming(emit)
        policy = plan.options.tool_execution
        tools = plan.request.tools
        if policy is not None and policy.mode == "executor" and tools:
            return self.launch_work(recorder, _no_executor)
        active = _Active(pauses=None)
        if policy is not None and policy.mode == "external" and tools:
            active.pauses = ToolPauses(recorder, policy, tools, engine.config.budget)
        pauses = active.pauses
        return self.launch_work(recorder, lambda: engine.run(plan, recorder, emit, pauses), active=active)

    def launch_work(
        self,
        recorder: RunRecorder,
        work: Callable[[], Coroutine[Any, Any, FusionResult]],
        active: _Active | None = None,
    ) -> asyncio.Task[FusionResult]:
        """Run any recorded work (a fusion run, a trajectory fusion) as a task this service can cancel."""
        active = active or _Active(pauses=None)
        active.task = asyncio.create_task(self._execute(recorder, work(), lambda: active.cancel_reason))
        self.active[recorder.run_id] = active
        active.task.add_done_callback(lambda task: self._ended(recorder.run_id, task))
        return active.task

    def _ended(self, run_id: str, task: asyncio.Task[FusionResult]) -> None:
        self.active.pop(run_id, None)
        if not task.cancelled():
            # Recorded by _execute already; a native run's task may have no one awaiting it to see this.
            task.exception()

    async def cancel(self, run_id: str, owner_id: str | None = None) -> bool:
        """Cancel a run and wait until its end is recorded; False when no router executes it.

        A run executing here is cancelled here; with `owner_id` (the run's owner) and a shared store,
        one executing in another router is cancelled there.
        """
        active = self.active.get(run_id)
        if active is None:
            if not self._elsewhere(owner_id):
                return False
            assert owner_id is not None
            reply = await self._send(owner_id, Command("cancel", run_id))
            return reply is not None and bool(reply.body.get("cancelled"))
        active.cancel_reason = "cancel_requested"
        active.task.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await active.task
        return True

    def _elsewhere(self, owner_id: str | None) -> bool:
        """Whether a run of `owner_id` may be executing in another router this one can reach."""
        return self.store.relay is not None and owner_id is not None and owner_id != self.store.owner_id

    async def _send(self, owner_id: str, command: Command) -> Reply | None:
        """Have the router executing a run carry out `command`; None when no router holds its lease.

        The owner's error (a 409 for a tool result that does not match, say) is raised here as it was there.
        """
        assert self.store.relay is not None
        try:
            reply = await self.store.relay.send(owner_id, command, RELAY_WAIT_S)
        except OwnerGone:
            return None
        except OwnerSilent as silent:
            raise APIError(
                503,
                f"run '{command.run_id}' is executing in another router, which did not answer: {silent}",
                type="server_error",
                code="run_owner_unreachable",
                retry_after="1",
            ) from None
        if reply.status >= 400:
            error = reply.body.get("error") or {}
            refused = APIError(
                reply.status,
                str(error.get("message") or "the router executing this run refused"),
                type=str(error.get("type") or "invalid_request_error"),
                code=error.get("code"),
                param=error.get("param"),
            )
            refused.run_id = error.get("run_id")
            raise refused
        return reply

    async def _carry_out(self, command: Command) -> Reply:
        """A command another router sent for a run executing here (the store's relay calls this)."""
        try:
            if command.kind == "cancel":
                return Reply(200, {"cancelled": await self.cancel(command.run_id)})
            record = await self.store.get_run(command.run_id)
            if record is None:
                raise not_found(f"no run '{command.run_id}'", code="run_not_found")
            await self.submit_tool_result(record, ToolResultSubmission.model_validate(command.body))
            await self.store.flush()  # what the result changed is committed before the sender reads the run
            return Reply(200)
        except APIError as error:
            return Reply(error.status, error.body())

    async def wait_settled(self, run_id: str) -> Literal["ended", "paused"]:
        """Wait until run `run_id` ends, or settles waiting for external tool results (every member
        finished or waiting on a call); which one, it says.

        A run not executing here has ended as far as this router can tell, unless the store is shared:
        then another router may execute it, and its events are followed in the store. Waiting never
        cancels the run: a waiter that is cancelled (its client went away) leaves the run going.
        """
        active = self.active.get(run_id)
        if active is None:
            return await self._follow(run_id) if self.store.relay is not None else "ended"
        if active.task.done():
            return "ended"
        pauses = active.pauses
        if pauses is not None and not pauses.settled.is_set():
            settled = asyncio.ensure_future(pauses.settled.wait())
            try:
                await asyncio.wait({active.task, settled}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                settled.cancel()
        elif pauses is None:
            await asyncio.wait({active.task})
        return "paused" if pauses is not None and pauses.settled.is_set() and not active.task.done() else "ended"

    def pending_calls(self, run_id: str) -> list[dict[str, Any]]:
        """The calls a run executing here waits on (`{tool_call_id, candidate_id, name, arguments}`)."""
        active = self.active.get(run_id)
        return active.pauses.plan() if active is not None and active.pauses is not None else []

    async def _follow(self, run_id: str) -> Literal["ended", "paused"]:
        """Wait on the store until another router's run ends or pauses (its lease lapsing ends it too)."""
        while True:
            # The cursor first: an event committed after it wakes the wait below, whatever the record said.
            cursor = (await self.store.event_cursors([run_id])).get(run_id, 0)
            record = await self.store.get_run(run_id)
            if record is None or record.finished or record.owner_id == self.store.owner_id:
                return "ended"
            if record.state == "requires_action":
                return "paused"
            await self.store.wait_for_events(run_id, cursor, FOLLOW_S)

    async def submit_tool_result(self, record: RunRecord, submission: ToolResultSubmission) -> None:
        """Feed one tool result to a paused run; mismatches raise 409 APIErrors, nothing applied then.

        A run paused in another router (a shared store) gets it there; that router's answer is this one's.
        """
        active = self.active.get(record.run_id)
        if active is None and not record.finished and self._elsewhere(record.owner_id):
            assert record.owner_id is not None
            body = submission.model_dump(mode="json", exclude_unset=True)
            if await self._send(record.owner_id, Command("tool_result", record.run_id, body)) is not None:
                return
        if active is None or active.pauses is None:
            raise APIError(
                409,
                f"run '{record.run_id}' is {record.state}, not waiting for tool results",
                type="invalid_request_error",
                code="run_not_waiting",
            )
        result = ToolResult(
            tool_call_id=submission.tool_call_id,
            output=submission.content(),
            candidate_id=submission.candidate_id,
            name=submission.tool_name,
        )
        await active.pauses.submit([result])

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
        # The client's W3C trace, when it sent one and no fusion trace id: the run joins it.
        parent = TraceParent.parse(incoming_traceparent.get())
        trace = trace_id or (parent.trace_id if parent is not None else new_trace_id())
        await self.store.create_run(
            run_id,
            mode=mode,
            request=request,
            trace_id=trace,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
        )
        recorder = RunRecorder(self.store, self.tracer, run_id, trace, self.observer)
        recorder.trace_started(mode, request)
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
            state = "expired" if reason == ROUTER_STOPPED else "cancelled"
            await asyncio.shield(self._end(recorder, state, {"reason": reason}, reason))
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
        try:
            result.event_cursor = await recorder.transition(
                "completed", {"decision": summary["decision"]}, summary=summary, terminal_reason="completed"
            )
        except RunFinished as ended:
            # Expired by another router (this one's lease lapsed) while it ran: the answer is still the caller's.
            log.warning("run %s completed here, but %s", recorder.run_id, ended)
        return result

    async def _end(self, recorder: RunRecorder, state: str, payload: dict[str, Any], reason: str | None = None) -> None:
        try:
            await recorder.transition(state, payload, summary=payload, terminal_reason=reason or state)
        except StoreError as exc:
            log.warning("the end of run %s (%s) was not recorded: %s", recorder.run_id, state, exc)
        except Exception:
            log.exception("could not record the end of run %s", recorder.run_id)

    async def stop(self) -> None:
        """The router is stopping: every run still executing is cancelled and recorded `expired` (router_stopped)."""
        stopping = list(self.active.values())
        for active in stopping:
            active.cancel_reason = ROUTER_STOPPED
            active.task.cancel()
        await asyncio.gather(*(active.task for active in stopping), return_exceptions=True)
