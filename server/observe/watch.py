"""Metrics and OpenTelemetry spans read off a run's events, so the engine counts and traces nothing itself.

    observer = RunObserver(config, metrics=RouterMetrics(config), spans=None)
    watch = observer.watch(run_id=..., trace_id=..., root_span_id=..., mode="panel", request=body)  # None: all off
    watch.transition("generating", {...})            # server.runs.RunRecorder calls these as it records
    watch.event("model_call.completed", {...})
    emit = watch.streaming(emit)                     # times the first token a streamed answer sends

The events are the run store's (`model_call.started/completed/failed` with role, endpoint_id,
latency_ms, usage, status; `candidate.dropped`; `judge.record`; `synthesis.empty`; `decision`;
`run.state`), so what is counted is what the run's record says happened.
"""

from __future__ import annotations

import time
from typing import Any

from bridge.endpoint import Pricing
from server.config import PanelConfig
from server.engine import EngineEvent, TextDelta
from server.engine.calls import Emit
from server.observe.metrics import DECISION_REASONS, EARLY_EXITS, LIVE_STATES, ROLES, RUN_MODES, RouterMetrics, bounded
from server.observe.spans import RunSpans, SpanSink
from server.store import TERMINAL_STATES

__all__ = ["RunObserver", "RunWatch"]


class RunObserver:
    """Watches every run of one router for its metrics and its traces; either may be off."""

    def __init__(self, config: PanelConfig, *, metrics: RouterMetrics | None, spans: SpanSink | None) -> None:
        self.config = config
        self.metrics = metrics
        self.spans = spans

    def watch(
        self, *, run_id: str, trace_id: str, root_span_id: str, mode: str, request: dict[str, Any] | None
    ) -> RunWatch | None:
        """A new run's watch; None when nothing watches (metrics and tracing both off)."""
        if self.metrics is None and self.spans is None:
            return None
        spans = None
        if self.spans is not None:
            spans = RunSpans(
                self.spans,
                self.config,
                run_id=run_id,
                trace_id=trace_id,
                root_span_id=root_span_id,
                mode=mode,
                request=request,
            )
        return RunWatch(self.metrics, spans, mode)


class RunWatch:
    """One run as it goes: its state and since when, why its answer is degraded, its open spans."""

    def __init__(self, metrics: RouterMetrics | None, spans: RunSpans | None, mode: str) -> None:
        self.metrics = metrics
        self.spans = spans
        self.mode = bounded(mode, RUN_MODES)
        self.state = "queued"
        self.started = self.since = time.perf_counter()
        self.degraded: set[str] = set()
        self.first_token: float | None = None
        if metrics is not None:
            metrics.in_flight.labels("queued").inc()

    # -- what the recorder tells ----------------------------------------------------------------

    def transition(self, state: str, payload: dict[str, Any] | None, summary: dict[str, Any] | None = None) -> None:
        if self.state in TERMINAL_STATES:
            return  # an ending is final: a second one (a lapsed lease, a late cancel) changes nothing here
        now = time.perf_counter()
        previous, self.state = self.state, state
        ended = state in TERMINAL_STATES
        metrics = self.metrics
        if metrics is not None:
            if previous != "queued":
                metrics.phases.labels(bounded(previous, LIVE_STATES)).observe(now - self.since)
            metrics.in_flight.labels(bounded(previous, LIVE_STATES)).dec()
            if ended:
                metrics.runs.labels(self.mode, state).inc()
                metrics.run_latency.labels(self.mode, state).observe(now - self.started)
                if state == "completed":
                    for reason in self.degraded:
                        metrics.degraded.labels(reason).inc()
            else:
                metrics.in_flight.labels(bounded(state, LIVE_STATES)).inc()
        self.since = now
        if self.spans is not None:
            if ended:
                self.spans.end(state, payload or {}, summary)
            else:
                self.spans.phase(state)

    def event(self, type: str, payload: dict[str, Any]) -> None:
        handler = _HANDLERS.get(type)
        if handler is not None:
            handler(self, payload)

    def streaming(self, emit: Emit) -> Emit:
        """`emit`, noting when the first token of the answer leaves for the client."""

        async def timed(event: EngineEvent) -> None:
            if self.first_token is None and isinstance(event, TextDelta):
                self.first_token = time.perf_counter() - self.started
                if self.metrics is not None:
                    self.metrics.first_token.labels(self.mode).observe(self.first_token)
            await emit(event)

        return timed

    # -- one handler per event type -------------------------------------------------------------

    def _call_started(self, payload: dict[str, Any]) -> None:
        if self.spans is not None:
            self.spans.call_started(payload)

    def _call_completed(self, payload: dict[str, Any]) -> None:
        self._call_ended(payload, failed=False)

    def _call_failed(self, payload: dict[str, Any]) -> None:
        self._call_ended(payload, failed=True)

    def _call_ended(self, payload: dict[str, Any], *, failed: bool) -> None:
        metrics = self.metrics
        if metrics is not None:
            endpoint_id = metrics.endpoint(payload.get("endpoint_id"))
            usage = payload.get("usage") or {}
            pricing = self._pricing(metrics, endpoint_id)
            metrics.calls.record(
                endpoint_id,
                bounded(payload.get("role"), ROLES),
                seconds=float(payload.get("latency_ms") or 0) / 1000,
                status=int(payload.get("status") or 500) if failed else None,
                input_tokens=int(usage.get("prompt_tokens") or 0),
                output_tokens=int(usage.get("completion_tokens") or 0),
                pricing=pricing,
            )
        if self.spans is not None:
            self.spans.call_ended(payload, failed=failed)

    @staticmethod
    def _pricing(metrics: RouterMetrics, endpoint_id: str) -> Pricing | None:
        try:
            return metrics.config.endpoint(endpoint_id).pricing
        except KeyError:
            return None  # "other": not an endpoint of this config

    def _dropped(self, payload: dict[str, Any]) -> None:
        self.degraded.add("member_dropped")
        if self.metrics is not None:
            self.metrics.drops.labels(self.metrics.endpoint(payload.get("endpoint_id"))).inc()
        if self.spans is not None:
            self.spans.note("candidate.dropped", payload)

    def _judged(self, payload: dict[str, Any]) -> None:
        error = payload.get("parse_error")
        if error:
            self.degraded.add("judge_failed" if "judge call failed" in str(error) else "judge_unparsed")

    def _fell_back(self, payload: dict[str, Any]) -> None:
        self.degraded.add("synthesis_fallback")

    def _decided(self, payload: dict[str, Any]) -> None:
        decision = bounded(payload.get("type"), ("select_candidate", "synthesize"))
        reason = bounded(payload.get("reason"), DECISION_REASONS)
        if self.metrics is not None:
            self.metrics.decisions.labels(decision, reason).inc()
            if decision == "select_candidate" and reason in EARLY_EXITS:
                self.metrics.early_exits.labels(reason).inc()
        if self.spans is not None:
            self.spans.note("decision", payload)


_HANDLERS = {
    "model_call.started": RunWatch._call_started,
    "model_call.completed": RunWatch._call_completed,
    "model_call.failed": RunWatch._call_failed,
    "candidate.dropped": RunWatch._dropped,
    "judge.record": RunWatch._judged,
    "synthesis.empty": RunWatch._fell_back,
    "decision": RunWatch._decided,
}
