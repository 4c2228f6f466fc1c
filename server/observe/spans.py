"""One run as an OpenTelemetry trace: the run, its phases, its model calls (GenAI semantic conventions).

    spans = RunSpans(sink, config, run_id=..., trace_id=..., root_span_id=..., mode="panel", request=body)
    spans.phase("generating")
    spans.call_started(payload); spans.call_ended(payload, failed=False)
    spans.end("completed", summary)

    invoke_workflow fusionkit/panel          the run (its parent: the client's `traceparent`, if it sent one)
      generating                             one span per state the run passes through
        chat mock-fast                       one per model call: span id = the call's `span_id`, which the
        chat mock-careful                    bridge receives as the parent of its own `chat` span
      judging
        chat mock-careful
      synthesizing
        chat mock-careful

The run's trace id and its root span are the ids the run's fusion trace events and `x-fusion-*`
headers carry, so a run id, a fusion trace and an OpenTelemetry trace point at each other.

The spans are written down here as plain `SpanRecord`s, which the sink turns into SDK spans: the
router's sink is a helper process (server/observe/exporter.py), because the Python SDK and its
exporter cost ~60 µs a span, which the router's event loop would otherwise pay (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import time
from typing import Any, Protocol

from bridge.otel import SpanKind, SpanRecord, chat_attributes, failure_attributes, genai_messages, outcome_attributes
from bridge.tracing import TraceParent, joined_trace, new_span_id, w3c_trace_id
from server.config import PanelConfig

__all__ = ["RunSpans", "SpanSink"]


class SpanSink(Protocol):
    """Where finished spans go: `bridge.otel.Tracing` (in this process) or the exporter process."""

    @property
    def capture_content(self) -> bool: ...

    def sampled(self, parent: TraceParent | None, trace_id: str, name: str) -> bool: ...

    def emit(self, record: SpanRecord) -> None: ...


class _OpenSpan:
    """A span begun and not yet ended: what its record will say."""

    __slots__ = ("attributes", "error", "events", "kind", "name", "parent", "span_id", "start_ns")

    def __init__(self, name: str, span_id: str, parent: str | None, kind: SpanKind, attributes: dict[str, Any]) -> None:
        self.name, self.span_id, self.parent, self.kind, self.attributes = name, span_id, parent, kind, attributes
        self.start_ns = time.time_ns()
        self.events: list[tuple[str, int, dict[str, Any]]] = []
        self.error: str | None = None

    def fail(self, status: int | None, message: object) -> None:
        self.attributes.update(failure_attributes(status))
        self.error = str(message) if message else ""


class RunSpans:
    """The open spans of one run; every method is called from the event loop, in the run's event order.

    A run its sampler turns down records nothing (`on` is False)."""

    def __init__(
        self,
        sink: SpanSink,
        config: PanelConfig,
        *,
        run_id: str,
        trace_id: str,
        root_span_id: str,
        mode: str,
        request: dict[str, Any] | None,
    ) -> None:
        self.sink = sink
        self.config = config
        self.trace_id = w3c_trace_id(trace_id)
        parent = joined_trace(trace_id)  # None also when the client named another trace (x-fusion-trace-id)
        self._client_span = parent.span_id if parent is not None else None
        name = f"invoke_workflow fusionkit/{mode}"
        self.on = sink.sampled(parent, self.trace_id, name)
        self.root = _OpenSpan(
            name,
            root_span_id,
            self._client_span,
            "server",
            {
                "gen_ai.operation.name": "invoke_workflow",
                "gen_ai.workflow.name": f"fusionkit/{mode}",
                "fusionkit.run_id": run_id,
            },
        )
        if self.on and sink.capture_content and request is not None:
            self.root.attributes["gen_ai.input.messages"] = json.dumps(genai_messages(_messages_of(request)))
        self._phase: _OpenSpan | None = None
        self._calls: dict[int, _OpenSpan] = {}
        self._tokens = [0, 0]

    def phase(self, state: str) -> None:
        """The run entered `state`: the previous phase's span ends, this one's starts."""
        if not self.on:
            return
        if self._phase is not None:
            self._close(self._phase)
        self._phase = _OpenSpan(state, new_span_id(), self.root.span_id, "internal", {})  # named for the phase

    def call_started(self, payload: dict[str, Any]) -> None:
        if not self.on:
            return
        endpoint_id = str(payload.get("endpoint_id"))
        try:
            endpoint = self.config.endpoint(endpoint_id)
        except KeyError:
            return
        attributes = chat_attributes(endpoint, **{"fusionkit.role": payload.get("role")})
        if payload.get("candidate_id"):
            attributes["fusionkit.candidate_id"] = payload["candidate_id"]
        parent = self._phase or self.root
        span_id = payload.get("span_id") or new_span_id()
        self._calls[int(payload.get("call", 0))] = _OpenSpan(
            f"chat {endpoint.model}", span_id, parent.span_id, "client", attributes
        )

    def call_ended(self, payload: dict[str, Any], *, failed: bool) -> None:
        span = self._calls.pop(int(payload.get("call", 0)), None)
        if span is None:
            return
        if failed:
            span.fail(payload.get("status"), str(payload.get("reason") or ""))
        else:
            usage = payload.get("usage") or {}
            self._tokens[0] += int(usage.get("prompt_tokens") or 0)
            self._tokens[1] += int(usage.get("completion_tokens") or 0)
            span.attributes.update(outcome_attributes(usage, payload.get("finish_reason")))
        self._close(span)

    def note(self, name: str, attributes: dict[str, Any]) -> None:
        """Something that happened to the run as a whole (a dropped member, the decision): an event on its span."""
        if self.on:
            kept = {k: v for k, v in attributes.items() if isinstance(v, str | int | float | bool)}
            self.root.events.append((name, time.time_ns(), kept))

    def end(self, state: str, payload: dict[str, Any], summary: dict[str, Any] | None) -> None:
        if not self.on:
            return
        for span in self._calls.values():
            span.fail(499, f"the run ended ({state}) before the call did")
            self._close(span)
        self._calls.clear()
        if self._phase is not None:
            self._close(self._phase)
            self._phase = None
        root = self.root
        root.attributes.update(
            {
                "fusionkit.state": state,
                "gen_ai.usage.input_tokens": self._tokens[0],
                "gen_ai.usage.output_tokens": self._tokens[1],
            }
        )
        if state != "completed":
            error = payload.get("error") or {}
            status = payload.get("status")
            message = error.get("message") if isinstance(error, dict) else None
            root.fail(status if isinstance(status, int) else None, message or payload.get("reason"))
            if state != "failed":
                root.attributes["error.type"] = state
        elif self.sink.capture_content and summary is not None:
            final = summary.get("final_output")
            if isinstance(final, dict):
                root.attributes["gen_ai.output.messages"] = json.dumps(genai_messages([final]))
        self._close(root)

    def _close(self, span: _OpenSpan) -> None:
        remote = span is self.root and self._client_span is not None
        self.sink.emit(
            SpanRecord(
                span.name,
                span.kind,
                self.trace_id,
                span.span_id,
                span.parent,
                remote,
                span.start_ns,
                time.time_ns(),
                span.attributes,
                span.events,
                span.error,
            )
        )


def _messages_of(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation a run was asked about, from whichever door's body it recorded."""
    inner = request.get("body")
    body: dict[str, Any] = inner if isinstance(inner, dict) else request
    messages = body.get("messages")
    if isinstance(messages, list):
        return [m for m in messages if isinstance(m, dict)]
    given = body.get("input")  # the Responses door
    if isinstance(given, str):
        return [{"role": "user", "content": given}]
    if isinstance(given, list):
        return [m for m in given if isinstance(m, dict) and "role" in m]
    return []
