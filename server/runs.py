"""Runs as the router records them: the engine's Recorder over the run store and the trace emitter.

runs = RunService(store, tracer)
recorder = await runs.start(mode="panel", request=body)
result = await runs.execute(recorder, engine.run(...))   # completed / failed / cancelled recorded
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from bridge.errors import APIError
from bridge.tracing import TraceEmitter, new_span_id, new_trace_id
from server.engine import FusionResult
from server.store import RunStore, new_run_id

__all__ = ["RunRecorder", "RunService"]

log = logging.getLogger("fusionkit.router")

# Which trace component an engine event belongs to (SPEC §12).
_COMPONENT = {
    "panel": "panel-model",
    "single": "panel-model",
    "judge": "judge",
    "synthesizer": "synthesis",
    "verifier": "judge",
}


class RunRecorder:
    """Records one run: every call appends to the store and, when tracing is on, emits a trace event."""

    def __init__(self, store: RunStore, tracer: TraceEmitter, run_id: str, trace_id: str) -> None:
        self.store = store
        self.tracer = tracer
        self.run_id = run_id
        self.trace_id = trace_id
        self.root_span = new_span_id()
        self.cursor = 1

    async def transition(
        self,
        state: str,
        payload: dict[str, Any] | None = None,
        summary: dict[str, Any] | None = None,
        terminal_reason: str | None = None,
    ) -> int:
        self.cursor = await self.store.transition(
            self.run_id, state, payload=payload, summary_update=summary, terminal_reason=terminal_reason
        )
        self._trace("run.state", {"state": state, **(payload or {})})
        return self.cursor

    async def event(self, type: str, payload: dict[str, Any]) -> int:
        self.cursor = await self.store.append_event(self.run_id, type, payload)
        self._trace(type, payload)
        return self.cursor

    async def artifact(self, content: str, media_type: str = "text/plain") -> str:
        return await self.store.put_artifact(content, media_type, run_id=self.run_id)

    def _trace(self, type: str, payload: dict[str, Any]) -> None:
        if not self.tracer.enabled:
            return
        self.tracer.emit(
            trace_id=self.trace_id,
            span_id=new_span_id(),
            parent_span_id=self.root_span,
            component=_COMPONENT.get(str(payload.get("role")), "router"),
            event_type=type,
            candidate_id=payload.get("candidate_id"),
            model_id=payload.get("endpoint_id"),
            payload={"run_id": self.run_id, **payload},
        )


class RunService:
    """Creates runs and records how they end, whatever way they end."""

    def __init__(self, store: RunStore, tracer: TraceEmitter) -> None:
        self.store = store
        self.tracer = tracer

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
        return RunRecorder(self.store, self.tracer, run_id, trace)

    async def execute(self, recorder: RunRecorder, work: Coroutine[Any, Any, FusionResult]) -> FusionResult:
        try:
            result = await work
        except APIError as error:
            await self._end(recorder, "failed", {"error": error.body()["error"], "status": error.status})
            raise
        except asyncio.CancelledError:
            await asyncio.shield(self._end(recorder, "cancelled", {"reason": "cancelled"}, "client_disconnected"))
            raise
        except Exception as exc:
            log.exception("run %s failed unexpectedly", recorder.run_id)
            await self._end(recorder, "failed", {"error": {"message": f"internal error: {type(exc).__name__}"}})
            raise
        meta = result.metadata
        summary = {
            "route": meta.route,
            "models": meta.candidate_model_ids,
            "decision": meta.decision.model_dump() if meta.decision else None,
            "latency_ms": meta.latency_ms,
            "cost_estimate": meta.cost_estimate,
            "usage": result.usage.model_dump(),
            "final_output": result.message.model_dump(exclude_none=True),
            "failed_members": [f.model_dump() for f in meta.failed_members],
        }
        meta.event_cursor = await recorder.transition("completed", {"decision": summary["decision"]}, summary=summary)
        return result

    async def _end(self, recorder: RunRecorder, state: str, payload: dict[str, Any], reason: str | None = None) -> None:
        try:
            await recorder.transition(state, payload, summary=payload, terminal_reason=reason or state)
        except Exception:
            log.exception("could not record the end of run %s", recorder.run_id)
