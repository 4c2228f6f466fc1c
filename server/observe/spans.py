"""One run as an OpenTelemetry trace: the run, its phases, its model calls (GenAI semantic conventions).

    spans = RunSpans(tracing, config, run_id=..., trace_id=..., root_span_id=..., mode="panel", request=body)
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
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from bridge.otel import Tracing, chat_attributes, genai_messages, outcome_attributes
from bridge.tracing import TraceParent, incoming_traceparent, w3c_trace_id
from server.config import PanelConfig

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["RunSpans"]


class RunSpans:
    """The open spans of one run; every method is called from the event loop, in the run's event order."""

    def __init__(
        self,
        tracing: Tracing,
        config: PanelConfig,
        *,
        run_id: str,
        trace_id: str,
        root_span_id: str,
        mode: str,
        request: dict[str, Any] | None,
    ) -> None:
        self.tracing = tracing
        self.config = config
        w3c = w3c_trace_id(trace_id)
        parent = TraceParent.parse(incoming_traceparent.get())
        if parent is not None and parent.trace_id != w3c:
            parent = None  # the client named another trace (x-fusion-trace-id): the run's own trace wins
        self.root = tracing.start(
            f"invoke_workflow fusionkit/{mode}",
            parent=parent,
            kind="server",
            trace_id=w3c,
            span_id=root_span_id,
            attributes={
                "gen_ai.operation.name": "invoke_workflow",
                "gen_ai.workflow.name": f"fusionkit/{mode}",
                "fusionkit.run_id": run_id,
            },
        )
        if tracing.capture_content and request is not None:
            self.root.set_attribute("gen_ai.input.messages", json.dumps(genai_messages(_messages_of(request))))
        self._phase: Span | None = None
        self._calls: dict[int, Span] = {}
        self._tokens = [0, 0]

    def phase(self, state: str) -> None:
        """The run entered `state`: the previous phase's span ends, this one's starts."""
        if self._phase is not None:
            self._phase.end()
        self._phase = self.tracing.start(state, parent=self.root)  # the span's name is the phase

    def call_started(self, payload: dict[str, Any]) -> None:
        endpoint_id = str(payload.get("endpoint_id"))
        try:
            endpoint = self.config.endpoint(endpoint_id)
        except KeyError:
            return
        attributes = chat_attributes(endpoint, **{"fusionkit.role": payload.get("role")})
        if payload.get("candidate_id"):
            attributes["fusionkit.candidate_id"] = payload["candidate_id"]
        self._calls[int(payload.get("call", 0))] = self.tracing.start(
            f"chat {endpoint.model}",
            parent=self._phase or self.root,
            kind="client",
            span_id=payload.get("span_id"),
            attributes=attributes,
        )

    def call_ended(self, payload: dict[str, Any], *, failed: bool) -> None:
        span = self._calls.pop(int(payload.get("call", 0)), None)
        if span is None:
            return
        if failed:
            self.tracing.fail(span, payload.get("status"), str(payload.get("reason") or ""))
        else:
            usage = payload.get("usage") or {}
            self._tokens[0] += int(usage.get("prompt_tokens") or 0)
            self._tokens[1] += int(usage.get("completion_tokens") or 0)
            span.set_attributes(outcome_attributes(usage, payload.get("finish_reason")))
        span.end()

    def note(self, name: str, attributes: dict[str, Any]) -> None:
        """Something that happened to the run as a whole (a dropped member, the decision): an event on its span."""
        self.root.add_event(name, {k: v for k, v in attributes.items() if isinstance(v, str | int | float | bool)})

    def end(self, state: str, payload: dict[str, Any], summary: dict[str, Any] | None) -> None:
        for span in self._calls.values():
            self.tracing.fail(span, 499, f"the run ended ({state}) before the call did")
            span.end()
        self._calls.clear()
        if self._phase is not None:
            self._phase.end()
            self._phase = None
        self.root.set_attributes(
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
            self.tracing.fail(self.root, status if isinstance(status, int) else None, message or payload.get("reason"))
            if state != "failed":
                self.root.set_attribute("error.type", state)
        elif self.tracing.capture_content and summary is not None:
            final = summary.get("final_output")
            if isinstance(final, dict):
                self.root.set_attribute("gen_ai.output.messages", json.dumps(genai_messages([final])))
        self.root.end()


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
