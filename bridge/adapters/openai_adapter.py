"""The `openai` and `openai-compatible` providers: the request passes through, the answer is checked.

    adapter = OpenAIAdapter(EndpointConfig(id="m", provider="openai-compatible", model="llama", base_url=URL))
    completion = await adapter.complete(request, CallContext())
    async for chunk in adapter.stream(request, CallContext()): ...

One `AsyncOpenAI` client (one connection pool) per adapter. The SDK's own retries are off: the
router retries with its own deadline, and a bridge must report an upstream failure as it is.
The request body is already OpenAI's wire format, so it goes out through the SDK's generic
`client.post("/chat/completions", body=...)`, which sends it as it is: `chat.completions.create`
would first walk every message against the SDK's TypedDicts, a sizeable share of a bridge's CPU per
request (measured in docs/benchmarks.md). Auth, base URL,
timeouts, the SSE reader and the error types are the SDK's either way.
OpenAI-compatible servers (vLLM, llama.cpp, Ollama, ...) differ in small ways, so their answers
are brought to the ChatAdapter contract here: tool-call deltas re-shaped, finish reasons mapped,
usage totals computed. Nothing is invented: a stream without a finish reason stays one.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, ValidationError

from bridge.adapters.base import CallContext
from bridge.adapters.chunks import finish_chunk, text_chunk, tool_arguments_chunk, tool_head_chunk, usage_chunk
from bridge.adapters.openai_sdk import openai  # the SDK's client and errors without all of `openai.types`
from bridge.endpoint import EndpointConfig
from bridge.errors import APIError, from_openai_status, redact, timed_out, upstream_failure
from bridge.protocol import ChatCompletion, ChatCompletionChunk, ChatRequest, Usage

__all__ = ["OpenAIAdapter", "map_openai_error"]

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
    """One OpenAI or OpenAI-compatible model, called through the official SDK."""

    def __init__(self, endpoint: EndpointConfig) -> None:
        self.provider: str = endpoint.provider
        self.model = endpoint.model
        self._secret = endpoint.api_key()
        self._client = openai.AsyncOpenAI(
            # A local server usually wants no key, but the SDK refuses to start without one.
            api_key=self._secret or "unused",
            base_url=endpoint.base_url,  # None: the SDK's default (OPENAI_BASE_URL, else api.openai.com)
            timeout=endpoint.timeout_s,
            max_retries=0,
        )
        self.base_url = _display_url(str(self._client.base_url))

    async def aclose(self) -> None:
        await self._client.close()

    async def complete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        try:
            # cast_to=object: the SDK hands back the decoded JSON, checked here against the contract.
            data = await self._client.post(
                "/chat/completions", cast_to=object, body=self._body(request, stream=False), options=_options(ctx)
            )
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, self.base_url, secret=self._secret) from None
        except ValueError:
            raise upstream_failure(f"upstream at {self.base_url} answered with malformed JSON") from None
        return _completion(data, self.base_url)

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatCompletionChunk]:
        shaper = _ChunkShaper()
        started = False
        try:
            upstream = await self._client.post(
                "/chat/completions",
                cast_to=object,
                body=self._body(request, stream=True),
                options=_options(ctx),
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
            started = True
            async with upstream:
                async for chunk in upstream:
                    for out in shaper.translate(chunk):
                        yield out
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, self.base_url, secret=self._secret, mid_stream=started) from None
        except ValueError:  # a frame that is not JSON (from the SDK) or not a chunk (ValidationError)
            raise upstream_failure(f"upstream at {self.base_url} sent a malformed stream chunk") from None

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


def _options(ctx: CallContext) -> openai.RequestOptions:
    options: openai.RequestOptions = {}
    headers = ctx.trace_headers()
    if headers:
        options["headers"] = headers
    if ctx.timeout_s is not None:
        options["timeout"] = ctx.timeout_s
    return options


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


def _display_url(url: str) -> str:
    """The URL as it may appear in messages: without credentials someone put in it."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url.rstrip("/")
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])).rstrip("/")


def map_openai_error(
    exc: openai.OpenAIError, base_url: str, *, secret: str | None = None, mid_stream: bool = False
) -> APIError:
    """An SDK exception as the status and OpenAI error body the client should see; `secret` is scrubbed."""

    if isinstance(exc, openai.APITimeoutError):
        return timed_out(f"upstream at {base_url} did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        if mid_stream:
            return upstream_failure(f"connection to upstream at {base_url} broke in the middle of the stream")
        return upstream_failure(f"cannot reach upstream at {base_url}")
    if not isinstance(exc, openai.APIStatusError):
        # Errors the SDK raises itself, e.g. an error frame in the middle of a stream.
        message = getattr(exc, "message", None) or type(exc).__name__
        return upstream_failure(redact(f"upstream at {base_url} failed in the middle of the stream: {message}", secret))
    status = exc.status_code
    # The SDK hands over the error object itself, not the {"error": ...} envelope; Ollama's is a bare string.
    body = exc.body
    details = body if isinstance(body, dict) else {"message": body} if isinstance(body, str) and body else {}
    clean = {**details, "message": redact(str(details.get("message") or exc.message or f"HTTP {status}"), secret)}
    headers = exc.response.headers
    retry_after = headers.get("retry-after") or _seconds(headers.get("retry-after-ms"))
    error = from_openai_status(status, {"error": clean}, retry_after, label=f"upstream at {base_url} answered {status}")
    if status >= 500 and retry_after is not None:
        error.retry_after = retry_after  # an overloaded upstream's hint is still worth passing on
    return error


def _seconds(milliseconds: str | None) -> str | None:
    try:
        return str(math.ceil(float(milliseconds) / 1000)) if milliseconds else None
    except ValueError:
        return None
