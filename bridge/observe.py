"""How a bridge watches its calls upstream: fusion trace events, Prometheus metrics, an OpenTelemetry span.

    observer = BridgeObserver(endpoint, tracer, metrics=BridgeMetrics(endpoint), tracing=None)
    watch = observer.call(body, ctx, traceparent)  # watch.ctx carries the call's traceparent upstream
    completion = await adapter.complete(upstream, watch.ctx)
    watch.answered(completion)                     # or watch.failed(status, message)
    chunks = watch.stream(adapter.stream(upstream, watch.ctx))   # the same for a stream, first token timed

Whatever is off costs nothing: with no trace destination, no metrics and no tracing, `stream`
hands the adapter's stream back untouched.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from bridge.adapters.base import CallContext
from bridge.endpoint import EndpointConfig
from bridge.errors import APIError, stream_cut_short
from bridge.metrics import BridgeMetrics
from bridge.otel import Tracing, chat_attributes, genai_messages, outcome_attributes
from bridge.protocol import ChatCompletion, ChatCompletionChunk, ChatRequest, Usage
from bridge.stream import StreamAccumulator
from bridge.tracing import CallSpan, TraceEmitter, TraceParent

if TYPE_CHECKING:
    from opentelemetry.trace import Span

__all__ = ["BridgeObserver", "CallWatch"]


class BridgeObserver:
    """The bridge's three ways of being seen, each optional: trace events, metrics, OpenTelemetry."""

    def __init__(
        self,
        endpoint: EndpointConfig,
        tracer: TraceEmitter,
        *,
        metrics: BridgeMetrics | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.tracer = tracer
        self.metrics = metrics
        self.tracing = tracing

    def call(self, body: ChatRequest, ctx: CallContext, traceparent: str | None) -> CallWatch:
        """Start watching one call; `traceparent` is the caller's W3C header, if it sent one."""
        span = CallSpan(
            self.tracer,
            trace_id=ctx.trace_id,
            parent_span_id=ctx.span_id,  # the caller's span for this call: the router's model call
            component="bridge",
            model_id=self.endpoint.id,
            candidate_id=ctx.candidate_id,
        )
        span.start({"provider": self.endpoint.provider, "model": self.endpoint.model, "stream": body.stream})
        otel = None
        parent = TraceParent.parse(traceparent)
        if self.tracing is not None:
            otel = self.tracing.start(
                f"chat {self.endpoint.model}",
                parent=parent,
                kind="client",
                attributes=chat_attributes(
                    self.endpoint,
                    **{
                        "gen_ai.request.temperature": body.temperature,
                        "gen_ai.request.top_p": body.top_p,
                        "gen_ai.request.max_tokens": body.max_completion_tokens or body.max_tokens,
                        "gen_ai.request.seed": body.seed,
                        "gen_ai.request.stream": body.stream,
                        "fusionkit.candidate_id": ctx.candidate_id,
                    },
                ),
            )
            if self.tracing.capture_content:
                messages = [m.model_dump(exclude_none=True) for m in body.messages]
                otel.set_attribute("gen_ai.input.messages", json.dumps(genai_messages(messages)))
            # The provider call is made inside this span: its request carries this span's context.
            ctx = dataclasses.replace(ctx, traceparent=self.tracing.traceparent(otel))
        elif parent is not None:
            ctx = dataclasses.replace(ctx, traceparent=parent.header())  # passed on, as a hop that records nothing
        return CallWatch(self, ctx, span, otel)


class CallWatch:
    """One call being watched; it ends with `answered` or `failed`, once."""

    def __init__(self, observer: BridgeObserver, ctx: CallContext, span: CallSpan, otel: Span | None) -> None:
        self.observer = observer
        self.ctx = ctx
        self._span = span
        self._otel = otel
        self._started = time.perf_counter()
        self._first_token: float | None = None

    @property
    def quiet(self) -> bool:
        """Nothing is watching: a stream needs no wrapper."""
        return not self._span.on and self.observer.metrics is None and self._otel is None

    def _elapsed(self) -> float:
        return time.perf_counter() - self._started

    def answered(self, completion: ChatCompletion) -> None:
        choice = completion.choices[0]
        usage = (completion.usage or Usage()).model_dump()
        seconds = self._elapsed()
        self._span.finish(
            latency_ms=round(seconds * 1000, 1),
            finish_reason=choice.finish_reason,
            tool_call_count=len(choice.message.tool_calls or []),
            usage=usage,
        )
        if self.observer.metrics is not None:
            self.observer.metrics.call(seconds, None, usage)
        if self._otel is not None:
            self._otel.set_attributes(outcome_attributes(usage, choice.finish_reason))
            self._otel.set_attribute("gen_ai.response.model", completion.model or self.observer.endpoint.model)
            if completion.id:
                self._otel.set_attribute("gen_ai.response.id", completion.id)
            tracing = self.observer.tracing
            if tracing is not None and tracing.capture_content:
                message = {**choice.message.model_dump(exclude_none=True), "finish_reason": choice.finish_reason}
                self._otel.set_attribute("gen_ai.output.messages", json.dumps(genai_messages([message])))
            self._otel.end()

    def failed(self, status: int, message: str) -> None:
        seconds = self._elapsed()
        self._span.finish(latency_ms=round(seconds * 1000, 1), error=message, status=status)
        if self.observer.metrics is not None:
            self.observer.metrics.call(seconds, status)
        if self._otel is not None and self.observer.tracing is not None:
            self.observer.tracing.fail(self._otel, status, message)
            self._otel.end()

    def stream(self, chunks: AsyncIterator[ChatCompletionChunk]) -> AsyncIterator[ChatCompletionChunk]:
        """The adapter's stream, passed on unchanged; the call ends when it ends, however it ends."""
        return chunks if self.quiet else self._watched(chunks)

    async def _watched(self, chunks: AsyncIterator[ChatCompletionChunk]) -> AsyncIterator[ChatCompletionChunk]:
        seen = StreamAccumulator()
        ended = False
        try:
            async for chunk in chunks:
                if seen.add(chunk) is not None or (chunk.choices and chunk.choices[0].delta.tool_calls):
                    self._first_chunk()
                yield chunk
            ended = True
            if seen.finish_reason is None:  # the client gets stream_cut_short from normalize_stream
                cut = stream_cut_short()
                self.failed(cut.status, cut.message)
            else:
                self.answered(seen.completion(model=""))
        except APIError as error:
            ended = True
            self.failed(error.status, error.message)
            raise
        except Exception as exc:  # an adapter's bug: the client gets a 502 error frame
            ended = True
            self.failed(502, f"the stream failed: {type(exc).__name__}")
            raise
        finally:
            if not ended:  # closed or cancelled: the client went away, or the server is stopping
                self.failed(499, "the client went away")

    def _first_chunk(self) -> None:
        if self._first_token is not None:
            return
        self._first_token = self._elapsed()
        if self.observer.metrics is not None:
            self.observer.metrics.first_token.labels(self.observer.endpoint.id).observe(self._first_token)
        if self._otel is not None:
            self._otel.set_attribute("gen_ai.response.time_to_first_chunk", self._first_token)
