"""The `anthropic` provider: OpenAI Chat Completions translated to and from the Messages API.

System and developer messages become the top-level `system`; turns alternate (neighbours
merged); image parts become image blocks; assistant tool calls become `tool_use` blocks and tool
messages `tool_result` blocks in a user turn; `stop_reason` maps to `finish_reason`; usage and
errors are reported in OpenAI terms. Streams are translated event by event from the SDK's raw
event stream, so tokens reach the client as Anthropic produces them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2

from bridge.adapters.base import CallContext, refuse_logprobs
from bridge.adapters.chunks import finish_chunk, text_chunk, tool_arguments_chunk, tool_head_chunk, usage_chunk
from bridge.adapters.turns import Part, split_conversation
from bridge.endpoint import EndpointConfig
from bridge.errors import APIError, bad_request, from_status, redact, timed_out, upstream_failure
from bridge.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    Choice,
    FunctionCall,
    ToolCall,
    Usage,
)

__all__ = ["DEFAULT_MAX_TOKENS", "STOP_REASONS", "AnthropicAdapter", "map_anthropic_error", "to_messages_request"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
# The Messages API requires max_tokens; every current Claude model can produce at least this many.
DEFAULT_MAX_TOKENS = 4096
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",  # a server tool paused the turn; OpenAI has no word closer than stop
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# The HTTP status each Anthropic error type comes with, for errors that arrive inside a 200 stream.
ERROR_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "timeout_error": 504,
    "api_error": 500,
    "overloaded_error": 529,
}


def _image_block(url: str) -> dict[str, Any]:
    if not url.startswith("data:"):
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, base64_marker, data = url[5:].partition(";base64,")
    if not base64_marker or not data:
        raise bad_request("image data URLs must be base64: data:<media type>;base64,<data>", param="messages")
    # The upstream judges the media type and the data; it names what it refuses.
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _block(part: Part) -> dict[str, Any]:
    if part.kind == "text":
        return {"type": "text", "text": part.text}
    if part.kind == "image":
        return _image_block(part.image_url)
    if part.kind == "tool_call":
        return {"type": "tool_use", "id": part.call_id, "name": part.name, "input": part.arguments}
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.call_id}
    if part.text:
        result["content"] = part.text
    return result


def _tool_choice(request: ChatRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    if isinstance(choice, str):
        translated: dict[str, Any] = {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
    elif choice is not None:
        translated = {"type": "tool", "name": choice.function.name}
    elif request.parallel_tool_calls is False:
        translated = {"type": "auto"}
    else:
        return None
    if request.parallel_tool_calls is False and translated["type"] != "none":
        translated["disable_parallel_tool_use"] = True
    return translated


def to_messages_request(request: ChatRequest, model: str) -> dict[str, Any]:
    """The Messages API body for an OpenAI request (sampling fields apart: see `_sampling`)."""
    refuse_logprobs(request, "anthropic")
    system, turns = split_conversation(request.messages)
    if not turns:
        raise bad_request("the conversation needs at least one user or assistant message", param="messages")
    body: dict[str, Any] = {
        "model": model,
        "max_tokens": request.token_limit or DEFAULT_MAX_TOKENS,
        "messages": [{"role": t.role, "content": [_block(p) for p in t.parts]} for t in turns],
    }
    if system:
        body["system"] = system
    if request.stop_list:
        body["stop_sequences"] = request.stop_list
    if request.tools:
        # Sent even with tool_choice "none": Anthropic refuses tool_use/tool_result blocks without tools.
        body["tools"] = [
            {
                "name": t.function.name,
                "description": t.function.description or "",
                "input_schema": t.function.parameters or {"type": "object", "properties": {}},
            }
            for t in request.tools
        ]
    choice = _tool_choice(request)
    if choice is not None and request.tools:
        body["tool_choice"] = choice
    return body


def _sampling(request: ChatRequest) -> dict[str, Any]:
    """temperature and top_p, which this SDK's `create` no longer names, so they ride in extra_body.

    OpenAI allows temperature up to 2, Anthropic up to 1: higher values are clamped rather than
    refused, so a panel's sampling settings work on every provider. 0 stays 0.
    """
    extra: dict[str, Any] = {}
    if request.temperature is not None:
        extra["temperature"] = min(request.temperature, 1.0)
    if request.top_p is not None:
        extra["top_p"] = request.top_p
    return extra


def _usage(usage: Any) -> tuple[int, int]:
    """(prompt, completion) tokens; OpenAI's prompt count includes what Anthropic counts as cached."""
    prompt = (
        (usage.input_tokens or 0)
        + (getattr(usage, "cache_creation_input_tokens", None) or 0)
        + (getattr(usage, "cache_read_input_tokens", None) or 0)
    )
    return prompt, usage.output_tokens or 0


class _Client(anthropic.AsyncAnthropic):
    """The SDK's client, sending the key as `x-api-key`.

    This SDK sends an api_key as a bearer token; the Messages API documents `x-api-key`, which
    Anthropic and the Anthropic-compatible servers all accept. The key lives in the client's own
    auth headers, never in per-request options, which the SDK writes to its debug log.
    """

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key} if self.api_key else {}


class AnthropicAdapter:
    """One Claude model behind the ChatAdapter contract, called through the official `anthropic` SDK.

    adapter = AnthropicAdapter(EndpointConfig(id="c", provider="anthropic", model="claude-x", api_key_env="KEY"))
    completion = await adapter.complete(request, CallContext())
    async for chunk in adapter.stream(request, CallContext()): ...

    One `AsyncAnthropic` client (one connection pool) per adapter; SDK retries are off, as for
    every adapter: the router retries within its own deadline.
    """

    provider = "anthropic"

    def __init__(self, endpoint: EndpointConfig) -> None:
        self.model = endpoint.model
        # Explicit, so neither ANTHROPIC_BASE_URL nor a profile on disk silently redirects the endpoint.
        self.base_url = (endpoint.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._secret = endpoint.api_key()
        # A key is always passed, so the SDK never goes looking for ANTHROPIC_API_KEY or profile credentials.
        self._client = _Client(
            api_key=self._secret or "unused", base_url=self.base_url, timeout=endpoint.timeout_s, max_retries=0
        )

    async def aclose(self) -> None:
        await self._client.close()

    def _arguments(self, request: ChatRequest, ctx: CallContext) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            **to_messages_request(request, self.model),
            "extra_body": _sampling(request) or None,
            "extra_headers": ctx.trace_headers() or None,
        }
        if ctx.timeout_s is not None:
            arguments["timeout"] = ctx.timeout_s
        return arguments

    def _error(self, exc: Exception, *, mid_stream: bool = False) -> APIError:
        return map_anthropic_error(exc, self.base_url, secret=self._secret, mid_stream=mid_stream)

    async def complete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        try:
            message = await self._client.messages.create(**self._arguments(request, ctx))
        except anthropic.AnthropicError as exc:
            raise self._error(exc) from None
        text: list[str] = []
        calls: list[ToolCall] = []
        for block in message.content:
            if block.type == "text":
                text.append(block.text)
            elif block.type == "tool_use":
                calls.append(
                    ToolCall(id=block.id, function=FunctionCall(name=block.name, arguments=json.dumps(block.input)))
                )
        # Text Claude writes before a tool call is kept: it is part of the answer, streamed or not.
        reply = AssistantMessage(content="".join(text) if text or not calls else None, tool_calls=calls or None)
        return ChatCompletion(
            model=self.model,
            choices=[Choice(message=reply, finish_reason=_finish(message.stop_reason, bool(calls)))],
            usage=Usage.of(*_usage(message.usage)),
        )

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatCompletionChunk]:
        tools = _ToolCalls()
        prompt_tokens = output_tokens = 0
        stop_reason: str | None = None
        started = False
        try:
            events = await self._client.messages.create(stream=True, **self._arguments(request, ctx))
            started = True
            # `async with`: a client that goes away closes the upstream response instead of leaving it to the GC.
            async with events:
                async for event in events:
                    if event.type == "message_start":
                        prompt_tokens, output_tokens = _usage(event.message.usage)
                    elif event.type == "content_block_start":
                        block = event.content_block
                        if block.type == "text" and block.text:
                            yield text_chunk(block.text)
                        elif block.type == "tool_use":
                            for chunk in tools.start(event.index, block.id, block.name, block.input):
                                yield chunk
                    elif event.type == "content_block_delta":
                        if event.delta.type == "text_delta" and event.delta.text:
                            yield text_chunk(event.delta.text)
                        elif event.delta.type == "input_json_delta" and event.delta.partial_json:
                            yield tools.arguments(event.index, event.delta.partial_json)
                    elif event.type == "content_block_stop":
                        for chunk in tools.stop(event.index):
                            yield chunk
                    elif event.type == "message_delta":
                        stop_reason = event.delta.stop_reason
                        output_tokens = event.usage.output_tokens  # cumulative, not an increment
                        if event.usage.input_tokens is not None:
                            prompt_tokens = _usage(event.usage)[0]
        except (anthropic.AnthropicError, httpx2.HTTPError) as exc:
            raise self._error(exc, mid_stream=started) from None
        if stop_reason is None:
            raise upstream_failure(f"the stream from Anthropic at {self.base_url} ended without a stop reason")
        yield finish_chunk(_finish(stop_reason, tools.count > 0))
        yield usage_chunk(Usage.of(prompt_tokens, output_tokens))


class _ToolCalls:
    """Anthropic content-block indexes to OpenAI tool-call indexes (0, 1, ... over tool_use blocks only)."""

    def __init__(self) -> None:
        self._index: dict[int, int] = {}
        self._has_arguments: set[int] = set()

    @property
    def count(self) -> int:
        return len(self._index)

    def start(self, block: int, call_id: str, name: str, given: object) -> list[ChatCompletionChunk]:
        index = self._index[block] = len(self._index)
        chunks = [tool_head_chunk(index, call_id, name)]
        if given:
            # Anthropic streams the input as deltas after an empty `{}`; some compatible servers send it whole here.
            chunks.append(self.arguments(block, json.dumps(given)))
        return chunks

    def arguments(self, block: int, piece: str) -> ChatCompletionChunk:
        index = self._index[block]
        self._has_arguments.add(index)
        return tool_arguments_chunk(index, piece)

    def stop(self, block: int) -> list[ChatCompletionChunk]:
        index = self._index.get(block)
        if index is None or index in self._has_arguments:
            return []
        # A call without arguments gets no input_json_delta; OpenAI clients must still be able to parse them.
        return [self.arguments(block, "{}")]


def _finish(stop_reason: str | None, called: bool) -> str:
    # A turn that called a tool ends with tool_calls, whatever Anthropic said.
    return "tool_calls" if called else STOP_REASONS.get(str(stop_reason), "stop")


def map_anthropic_error(
    exc: Exception, base_url: str, *, secret: str | None = None, mid_stream: bool = False
) -> APIError:
    """An SDK (or transport) exception as the status and OpenAI error body the client should see.

    Statuses are kept faithful as `from_status` keeps them (504 a timeout, other 5xx a 502), and 529
    overloaded becomes 503, which says "temporarily unavailable, retry" to any OpenAI client. An error event inside a
    stream arrives with status 200; its error type says which status it stands for. `secret` is
    scrubbed from everything the upstream said.
    """

    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return timed_out(f"Anthropic at {base_url} did not answer in time")
    if isinstance(exc, anthropic.APIConnectionError | httpx2.HTTPError):
        if mid_stream:
            return upstream_failure(f"the connection to Anthropic at {base_url} broke in the middle of the stream")
        return upstream_failure(f"cannot reach Anthropic at {base_url}")
    if not isinstance(exc, anthropic.APIStatusError):
        detail = getattr(exc, "message", None) or type(exc).__name__
        return upstream_failure(redact(f"Anthropic at {base_url} failed: {detail}", secret))
    kind, detail = _error_fields(exc)
    status = exc.status_code if exc.status_code >= 300 else ERROR_TYPE_STATUS.get(str(kind), 500)
    message = redact(f"anthropic: {(detail or f'HTTP {status}')[:500]}", secret)
    retry_after = exc.response.headers.get("retry-after") if exc.status_code >= 300 else None
    if status == 529:  # overloaded: "temporarily unavailable, retry" to any OpenAI client
        return APIError(503, message, type="upstream_error", code="upstream_overloaded", retry_after=retry_after)
    if status == 413:
        return APIError(413, message, type="invalid_request_error", code="request_too_large")
    # Billing, conflicts and the like stay as they are, named by Anthropic's error type.
    code = f"upstream_{kind or 'error'}" if 400 < status < 500 else None
    return from_status(status, message, code=code, retry_after=retry_after)


def _error_fields(exc: anthropic.APIStatusError) -> tuple[str | None, str | None]:
    """(error.type, error.message) of Anthropic's body `{"type": "error", "error": {"type", "message"}}`."""
    body = exc.body
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        kind, message = error.get("type"), error.get("message")
        return (str(kind) if kind else None), (str(message) if message else None)
    # Not Anthropic's shape (a proxy's HTML page, say): the SDK's own summary of the response.
    return None, exc.message
