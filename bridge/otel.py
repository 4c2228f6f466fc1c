"""OpenTelemetry traces, named after the GenAI semantic conventions; off and free unless asked for.

    settings = OtelSettings.resolve(service_name="fusionkit-bridge")   # None: tracing is off
    tracing = Tracing(settings) if settings else None                 # the SDK is imported only here
    span = tracing.start("chat gpt-4o", parent=TraceParent.parse(header), kind="client", attributes={...})
    headers["traceparent"] = tracing.traceparent(span)
    span.end()
    tracing.shutdown()                                                # flushes what is queued

On when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set, or a config gives an endpoint;
`OTEL_SDK_DISABLED=true` turns it off whatever else says. Spans leave over OTLP/HTTP (protobuf) from a
background thread. Each app has a tracer provider of its own, never the global one, so one process
can hold many apps (tests do). Prompt and completion text go on spans only when `capture_content`
(`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true`, the GenAI instrumentations' switch).

A span can also be made after the fact from a `SpanRecord` (`emit`): the router records its spans as
plain data while a run goes, with the ids its run events and `x-fusion-*` headers already carry (so
the fusion trace, the run store and the OpenTelemetry trace name the same things the same way), and
they become SDK spans elsewhere (server/observe/exporter.py). `RootSampler` is the SDK's sampler,
asked once, for a run's first span.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from bridge.endpoint import EndpointConfig
from bridge.metrics import call_outcome
from bridge.tracing import TraceParent

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import SpanProcessor
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.sdk.trace.sampling import Sampler
    from opentelemetry.trace import Span

__all__ = [
    "OtelSettings",
    "RootSampler",
    "SpanKind",
    "SpanRecord",
    "Tracing",
    "chat_attributes",
    "failure_attributes",
    "genai_messages",
    "outcome_attributes",
]

SpanKind = Literal["internal", "client", "server"]
_TRUE = ("1", "true", "yes", "on")
# `gen_ai.provider.name`: the conventions' well-known values where there is one.
_PROVIDER_NAMES = {
    "openai": "openai",
    "anthropic": "anthropic",
    "google": "gcp.gemini",
    "openai-compatible": "openai_compatible",
    "mock": "fusionkit.mock",
}


def chat_attributes(endpoint: EndpointConfig, **extra: Any) -> dict[str, Any]:
    """A chat call's span attributes before it answers: operation, provider, model (the `chat {model}` span)."""
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": _PROVIDER_NAMES.get(endpoint.provider, endpoint.provider),
        "gen_ai.request.model": endpoint.model,
        "fusionkit.endpoint_id": endpoint.id,
    }
    attributes.update({k: v for k, v in extra.items() if v is not None})
    return attributes


def outcome_attributes(usage: Mapping[str, Any] | None, finish_reason: str | None) -> dict[str, Any]:
    """What an answered call adds to its span: tokens in and out, why it stopped."""
    attributes: dict[str, Any] = {}
    if usage:
        attributes["gen_ai.usage.input_tokens"] = int(usage.get("prompt_tokens") or 0)
        attributes["gen_ai.usage.output_tokens"] = int(usage.get("completion_tokens") or 0)
    if finish_reason:
        attributes["gen_ai.response.finish_reasons"] = [finish_reason]
    return attributes


def failure_attributes(status: int | None) -> dict[str, Any]:
    """A failed span's attributes: the conventions' `error.type` (timeout, rate_limited, cancelled, else the
    status code) and the HTTP status of the failure."""
    outcome = call_outcome(status)
    named = outcome in ("timeout", "rate_limited", "cancelled")
    attributes: dict[str, Any] = {"error.type": outcome if named else str(status or "error")}
    if status is not None:
        attributes["http.response.status_code"] = status
    return attributes


class SpanRecord(NamedTuple):
    """A finished span as plain data (ids in hex, times in ns since the epoch), made without the SDK and
    turned into an SDK span later by `Tracing.emit`; `tuple(record)` is marshal-able."""

    name: str
    kind: SpanKind
    trace_id: str
    span_id: str
    parent_span_id: str | None
    parent_is_remote: bool  # the parent is a caller's span (a client's `traceparent`), not one of ours
    start_ns: int
    end_ns: int
    attributes: dict[str, Any]
    events: list[tuple[str, int, dict[str, Any]]]  # (name, time, attributes)
    error: str | None  # None: the span went well; else the message of its error status


@dataclass(frozen=True)
class OtelSettings:
    """Where spans go and what they may hold. `endpoint` None: the OTLP exporter reads OTEL_EXPORTER_OTLP_*."""

    service_name: str
    endpoint: str | None = None
    capture_content: bool = False

    @classmethod
    def resolve(
        cls,
        *,
        service_name: str,
        endpoint: str | None = None,
        capture_content: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> OtelSettings | None:
        """The settings when tracing is on (a configured `endpoint` or the OTLP variables), else None."""
        env = os.environ if environ is None else environ
        if env.get("OTEL_SDK_DISABLED", "").strip().lower() in _TRUE:
            return None
        if not (endpoint or env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")):
            return None
        if capture_content is None:
            capture_content = env.get("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "").lower() in _TRUE
        return cls(
            service_name=env.get("OTEL_SERVICE_NAME") or service_name,
            endpoint=endpoint,
            capture_content=capture_content,
        )

    @property
    def traces_url(self) -> str | None:
        """A configured base URL with OTLP/HTTP's traces path, as the exporter does for the variable."""
        return self.endpoint.rstrip("/") + "/v1/traces" if self.endpoint else None


class Tracing:
    """One app's tracer: spans with chosen or fresh ids, parents from W3C headers or other spans.

    `exporter`: where finished spans go (tests pass the SDK's in-memory exporter, exported at once);
    by default OTLP/HTTP from a batching thread.
    """

    def __init__(self, settings: OtelSettings, exporter: SpanExporter | None = None) -> None:
        # The SDK is imported here only: a server with tracing off never loads it.
        from opentelemetry import trace
        from opentelemetry.attributes import BoundedAttributes
        from opentelemetry.sdk import trace as sdk_trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanLimits, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        self.settings = settings
        self.provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
        self._processor: SpanProcessor
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self._processor = BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.traces_url))
        else:
            self._processor = SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(self._processor)
        self.tracer = self.provider.get_tracer("fusionkit")
        self.sampler = RootSampler(self.provider.sampler)
        self._trace, self._sdk, self._bounded = trace, sdk_trace, BoundedAttributes
        self._limits = SpanLimits()  # as the SDK's variables set them
        self._scope = InstrumentationScope("fusionkit")
        self._ok = trace.Status(trace.StatusCode.UNSET)
        self._sampled = trace.TraceFlags(trace.TraceFlags.SAMPLED)
        self._kinds = {
            "internal": trace.SpanKind.INTERNAL,
            "client": trace.SpanKind.CLIENT,
            "server": trace.SpanKind.SERVER,
        }

    @property
    def capture_content(self) -> bool:
        return self.settings.capture_content

    def start(
        self,
        name: str,
        *,
        parent: Span | TraceParent | None = None,
        kind: SpanKind = "internal",
        attributes: Mapping[str, Any] | None = None,
    ) -> Span:
        """Start a span under `parent`: a span of ours, or a caller's W3C context."""
        context = None
        if isinstance(parent, TraceParent):
            context = caller_context(parent)
        elif parent is not None:
            context = self._trace.set_span_in_context(parent)
        return self.tracer.start_span(name, context=context, kind=self._kinds[kind], attributes=attributes)

    def sampled(self, parent: TraceParent | None, trace_id: str, name: str) -> bool:
        return self.sampler.sampled(parent, trace_id, name)

    def emit(self, record: SpanRecord) -> None:
        """Hand the finished span `record` describes, with its ids and times, to the span processor.

        The span is built finished (a `ReadableSpan`), not started and ended through the tracer, which the
        SDK means for live spans: its trace was sampled when its run began (`sampled`), its attributes are
        the few this package sets, and the tracer's sampler, per-attribute checks and locks cost ~20 µs a
        span, where building it takes ~5 µs (docs/benchmarks.md). The SDK's limit on attribute value length
        (OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT), when set, still applies; tests/test_otel*.py check the result."""
        sdk, trace, sampled = self._sdk, self._trace, self._sampled
        trace_id = int(record.trace_id, 16)
        parent = None
        if record.parent_span_id is not None:
            parent = trace.SpanContext(trace_id, int(record.parent_span_id, 16), record.parent_is_remote, sampled)
        attributes: Mapping[str, Any] = record.attributes
        if self._limits.max_span_attribute_length is not None:
            attributes = self._bounded(max_value_len=self._limits.max_span_attribute_length, attributes=attributes)
        status = self._ok if record.error is None else trace.Status(trace.StatusCode.ERROR, record.error)
        span = sdk.ReadableSpan(
            name=record.name,
            context=trace.SpanContext(trace_id, int(record.span_id, 16), False, sampled),
            parent=parent,
            resource=self.provider.resource,
            attributes=attributes,
            events=[sdk.Event(name, fields, at) for name, at, fields in record.events],
            kind=self._kinds[record.kind],
            status=status,
            start_time=record.start_ns,
            end_time=record.end_ns,
            instrumentation_scope=self._scope,
        )
        self._processor.on_end(span)

    @staticmethod
    def traceparent(span: Span) -> str:
        """The W3C header for calls made inside `span`."""
        context = span.get_span_context()
        return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"

    @staticmethod
    def fail(span: Span, status: int | None, message: str | None = None) -> None:
        """Mark `span` failed: its status, the HTTP status of the failure and the conventions' `error.type`
        (timeout, rate_limited, cancelled, else the status code)."""
        from opentelemetry.trace import Status, StatusCode

        span.set_attributes(failure_attributes(status))
        span.set_status(Status(StatusCode.ERROR, message))

    def shutdown(self) -> None:
        """Export what is queued and stop the exporter's thread."""
        self.provider.shutdown()


class RootSampler:
    """Whether a trace is recorded: the SDK's sampler (by default as OTEL_TRACES_SAMPLER and
    OTEL_TRACES_SAMPLER_ARG configure it), asked once, for the trace's first span of ours."""

    def __init__(self, sampler: Sampler | None = None) -> None:
        if sampler is None:
            from opentelemetry.sdk.trace import TracerProvider

            sampler = TracerProvider(shutdown_on_exit=False).sampler  # the SDK reads the variables
        self._sampler = sampler

    def sampled(self, parent: TraceParent | None, trace_id: str, name: str) -> bool:
        """Is the span `name` of trace `trace_id` under `parent` (a caller's context, if any) sampled?"""
        context = None
        if parent is not None:
            context = caller_context(parent)
        return self._sampler.should_sample(context, int(trace_id, 16), name).decision.is_sampled()


def caller_context(parent: TraceParent) -> Context:
    """An OpenTelemetry context whose current span is a caller's, as its `traceparent` header names it."""
    from opentelemetry import trace

    flags = trace.TraceFlags(trace.TraceFlags.SAMPLED if parent.sampled else 0)
    span = trace.SpanContext(int(parent.trace_id, 16), int(parent.span_id, 16), is_remote=True, trace_flags=flags)
    return trace.set_span_in_context(trace.NonRecordingSpan(span))


def genai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages in the GenAI conventions' shape (`gen_ai.input.messages` / `gen_ai.output.messages`):
    each a role and its parts (text, tool calls, tool results)."""
    shaped = []
    for message in messages:
        parts: list[dict[str, Any]] = []
        content = message.get("content")
        if isinstance(content, str) and content:
            parts.append({"type": "text", "content": content})
        elif isinstance(content, list):
            parts += [{"type": "text", "content": p["text"]} for p in content if isinstance(p, dict) and "text" in p]
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            parts.append(
                {
                    "type": "tool_call",
                    "id": call.get("id"),
                    "name": function.get("name"),
                    "arguments": function.get("arguments"),
                }
            )
        role = str(message.get("role") or "user")
        if role == "tool":
            parts = [{"type": "tool_call_response", "id": message.get("tool_call_id"), "response": content}]
        entry: dict[str, Any] = {"role": role, "parts": parts}
        if message.get("finish_reason"):
            entry["finish_reason"] = message["finish_reason"]
        shaped.append(entry)
    return shaped
