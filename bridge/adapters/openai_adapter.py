"""The `openai` and `openai-compatible` providers: the request passes through, the answer is checked.

    adapter = OpenAIAdapter(EndpointConfig(id="m", provider="openai-compatible", model="llama", base_url=URL))
    completion = await adapter.complete(request, CallContext())
    async for chunk in adapter.stream(request, CallContext()): ...

The request body is already OpenAI's wire format and goes out as it is, through the official SDK
in a bridge or over aiohttp in the router (`transport="aiohttp"`; bridge/adapters/openai_transport.py
says why there are two). Either way the answer comes back here as decoded JSON and failures as the
`APIError` the client should see.
OpenAI-compatible servers (vLLM, llama.cpp, Ollama, ...) differ in small ways, so their answers
are brought to the ChatAdapter contract here: tool-call deltas re-shaped, finish reasons mapped,
usage totals computed. Nothing is invented: a stream without a finish reason stays one.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from bridge.adapters.base import CallContext
from bridge.adapters.chunks import finish_chunk, text_chunk, tool_arguments_chunk, tool_head_chunk, usage_chunk
from bridge.adapters.openai_transport import Transport, malformed
from bridge.endpoint import EndpointConfig
from bridge.errors import upstream_failure
from bridge.protocol import ChatCompletion, ChatCompletionChunk, ChatRequest, Usage

__all__ = ["OpenAIAdapter"]

# Finish reasons OpenAI-compatible servers send, in OpenAI's four words. Anything else (vLLM's
# "abort", for one) means the generation did not end normally and is reported as a failure.
_FINISH_REASONS = {
    "stop": "stop",
    "eos_token": "stop",
    "stop_sequence": "stop",
    "end_turn": "stop",
    "length": "length",
    "max_tokens": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}


class OpenAIAdapter:
    """One OpenAI or OpenAI-compatible model, reached through the SDK (default) or aiohttp."""

    def __init__(self, endpoint: EndpointConfig, *, transport: Literal["sdk", "aiohttp"] = "sdk") -> None:
        self.provider: str = endpoint.provider
        self.model = endpoint.model
        self._transport: Transport
        if transport == "aiohttp":
            from bridge.adapters.openai_via_aiohttp import AiohttpTransport

            self._transport = AiohttpTransport(endpoint)
        else:
            from bridge.adapters.openai_via_sdk import SdkTransport

            self._transport = SdkTransport(endpoint)
        self.base_url = self._transport.base_url

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def complete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        return _completion(await self._transport.post(self._body(request, stream=False), ctx), self.base_url)

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatCompletionChunk]:
        shaper = _ChunkShaper()
        try:
            # aclosing: a client that goes away closes the upstream stream now, not when it is collected.
            async with aclosing(self._transport.stream(self._body(request, stream=True), ctx)) as frames:
                async for frame in frames:
                    for out in shaper.translate(frame):
                        yield out
        except ValidationError:  # a frame that is JSON but not a chunk
            raise malformed(self.base_url, stream=True) from None

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body = {**request.upstream_dict(), "model": self.model}
        if stream:
            body["stream"] = True
            # Always ask for usage upstream; the bridge decides whether the client sees it.
            body["stream_options"] = {**body.get("stream_options", {}), "include_usage": True}
        else:
            # As the SDK's create() does: a non-streaming request does not mention streaming at all.
            body.pop("stream", None)
            body.pop("stream_options", None)
        return body


def _completion(data: object, base_url: str) -> ChatCompletion:
    """An upstream chat.completion in contract form (finish reasons mapped, `content: null` beside tool calls)."""
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise upstream_failure(f"upstream at {base_url} answered with something that is not a chat.completion")
    for choice in data["choices"]:
        if isinstance(choice, dict):
            if not isinstance(choice.get("logprobs"), dict):
                choice.pop("logprobs", None)  # servers that send something else must not fail the answer
            if choice.get("finish_reason") is not None:
                choice["finish_reason"] = _finish_reason(choice["finish_reason"])
    usage = data.pop("usage", None)
    try:
        completion = ChatCompletion.model_validate(data)
        completion.usage = _usage(usage) if isinstance(usage, dict) else None
    except ValidationError:
        raise upstream_failure(
            f"upstream at {base_url} answered with something that is not a chat.completion"
        ) from None
    for parsed in completion.choices:
        if parsed.message.tool_calls:
            # Some servers say "stop" beside tool calls, or send `content: ""`; clients expect neither.
            parsed.finish_reason = "tool_calls"
            parsed.message.content = parsed.message.content or None
    return completion


class _UpstreamFunction(BaseModel):
    name: str | None = None
    arguments: str | None = None


class _UpstreamToolCall(BaseModel):
    index: int | None = None
    id: str | None = None
    function: _UpstreamFunction | None = None


class _UpstreamDelta(BaseModel):
    content: str | None = None
    tool_calls: list[_UpstreamToolCall] | None = None


class _UpstreamChoice(BaseModel):
    index: int = 0
    delta: _UpstreamDelta = Field(default_factory=_UpstreamDelta)
    finish_reason: str | None = None
    logprobs: dict[str, Any] | None = None

    @field_validator("logprobs", mode="before")
    @classmethod
    def _only_openai_logprobs(cls, value: object) -> object:
        # As for a whole answer: a server that sends something else must not fail the stream.
        return value if isinstance(value, dict) else None


class _UpstreamUsage(BaseModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class _UpstreamChunk(BaseModel):
    """A stream chunk as OpenAI-compatible servers send it: more lenient than the contract's chunk."""

    choices: list[_UpstreamChoice] = Field(default_factory=list)
    usage: _UpstreamUsage | None = None


class _ChunkShaper:
    """Turns upstream stream chunks into the contract's chunks, one piece of news per chunk.

    OpenAI sends each tool call as a head (index, id, type, name, `arguments: ""`) and then argument
    pieces; other servers send a whole call in one delta, repeat the id on every piece, or leave out
    the index. The contract's shape is rebuilt here, so the bridge app sees one form only.
    """

    def __init__(self) -> None:
        self._ids: dict[int, str] = {}  # index -> call id, for every call whose head was sent

    def translate(self, data: object) -> Iterator[ChatCompletionChunk]:
        """The contract's chunks for one upstream chunk; raises ValidationError for one of the wrong shape."""
        chunk = _UpstreamChunk.model_validate(data)
        for choice in chunk.choices:
            if choice.index != 0:
                continue  # the bridge streams one choice
            if choice.delta.content:
                chunk_out = text_chunk(choice.delta.content)
                chunk_out.choices[0].logprobs = choice.logprobs
                yield chunk_out
            for call in choice.delta.tool_calls or []:
                yield from self._tool_call(call)
            if choice.finish_reason is not None:
                yield finish_chunk(_finish_reason(choice.finish_reason))
        if chunk.usage is not None:
            yield usage_chunk(Usage.of(chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0))

    def _tool_call(self, call: _UpstreamToolCall) -> Iterator[ChatCompletionChunk]:
        function = call.function or _UpstreamFunction()
        index = call.index if call.index is not None else self._index_of(call.id)
        if index not in self._ids:
            call_id = call.id or f"call_{uuid.uuid4().hex[:24]}"
            self._ids[index] = call_id
            yield tool_head_chunk(index, call_id, function.name or "")
        if function.arguments:
            yield tool_arguments_chunk(index, function.arguments)

    def _index_of(self, call_id: str | None) -> int:
        """Where an index-less delta belongs: a new id starts the next call, anything else continues the last."""
        for index, known in self._ids.items():
            if call_id and call_id == known:
                return index
        if call_id or not self._ids:
            return len(self._ids)
        return max(self._ids)


def _finish_reason(reason: object) -> str:
    mapped = _FINISH_REASONS.get(str(reason))
    if mapped is None:
        raise upstream_failure(f"upstream ended the answer with finish_reason {str(reason)[:40]!r}")
    return mapped


def _usage(data: dict[str, Any]) -> Usage:
    # Some servers leave out total_tokens; OpenAI's total is always the sum.
    usage = _UpstreamUsage.model_validate(data)
    return Usage.of(usage.prompt_tokens or 0, usage.completion_tokens or 0)
