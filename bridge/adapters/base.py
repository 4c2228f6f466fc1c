"""The contract every provider adapter keeps.

An adapter turns one OpenAI `ChatRequest` into a call to its provider and answers in OpenAI
terms. `complete` returns a whole `ChatCompletion`; `stream` yields `ChatCompletionChunk`s as
the provider produces tokens:

- content and tool-call deltas in OpenAI form (a tool call's first delta has index, id, type,
  name and `arguments: ""`; later ones only index and arguments),
- exactly one chunk with a `finish_reason`,
- then, when the provider reported it, one chunk with `choices=[]` and `usage`.

The bridge app (not the adapter) fills id/created/model, adds the first `role` delta and drops
the usage chunk when the client did not ask for it. Failures are raised as `APIError`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from bridge.errors import bad_request
from bridge.protocol import ChatCompletion, ChatCompletionChunk, ChatRequest
from bridge.tracing import traceparent_of

__all__ = ["CallContext", "ChatAdapter", "refuse_logprobs"]


@dataclass(frozen=True)
class CallContext:
    """Per-call facts that are not part of the OpenAI request: trace ids and a deadline.

    `traceparent` is the W3C context the call is made in (a bridge's own OpenTelemetry span); without
    it, the call's W3C context is its fusion ids (`bridge.tracing.traceparent_of`), so whoever answers
    sees the call as a child of the span that made it either way.
    """

    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    candidate_id: str | None = None
    timeout_s: float | None = None
    extra_headers: dict[str, str] = field(default_factory=dict)
    traceparent: str | None = None
    sampled: bool = True  # the W3C flag sent with the fusion ids: False when the run's trace is not recorded

    def trace_headers(self) -> dict[str, str]:
        pairs = {
            "x-fusion-trace-id": self.trace_id,
            "x-fusion-span-id": self.span_id,
            "x-fusion-parent-span-id": self.parent_span_id,
            "x-fusion-candidate-id": self.candidate_id,
            "traceparent": self.traceparent or traceparent_of(self.trace_id, self.span_id, sampled=self.sampled),
        }
        headers = {name: value for name, value in pairs.items() if value}
        headers.update(self.extra_headers)
        return headers


class ChatAdapter(Protocol):
    """One provider model, answered in OpenAI terms."""

    provider: str
    model: str

    async def complete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion: ...

    def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatCompletionChunk]: ...

    async def aclose(self) -> None: ...


def refuse_logprobs(request: ChatRequest, provider: str) -> None:
    """For providers whose answers carry no token log probabilities: say so instead of answering without them."""
    if request.logprobs or request.top_logprobs:
        raise bad_request(
            f"provider '{provider}' does not return logprobs; ask an openai or openai-compatible endpoint",
            param="logprobs",
            code="unsupported_parameter",
        )
