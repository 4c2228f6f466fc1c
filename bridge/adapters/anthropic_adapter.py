"""The `anthropic` provider: OpenAI Chat Completions translated to and from the Messages API.

System messages become the top-level `system`; turns alternate (neighbours merged); assistant
tool calls become `tool_use` blocks and tool messages `tool_result` blocks in a user turn;
`stop_reason` maps to `finish_reason`; usage is reported in OpenAI terms.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anthropic

from bridge.adapters.base import CallContext
from bridge.adapters.chunks import finish_chunk, text_chunk, tool_arguments_chunk, tool_head_chunk, usage_chunk
from bridge.adapters.turns import Part, split_conversation
from bridge.endpoint import EndpointConfig
from bridge.errors import APIError, bad_request, not_found, rate_limited, timed_out, upstream_auth, upstream_failure
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

__all__ = ["STOP_REASONS", "AnthropicAdapter"]

DEFAULT_MAX_TOKENS = 4096
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _image_block(url: str) -> dict[str, Any]:
    if url.startswith("data:") and ";base64," in url:
        media_type, data = url[5:].split(";base64,", 1)
        base64.b64decode(data[:64] + "=" * (-len(data[:64]) % 4))  # fail early on garbage
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _block(part: Part) -> dict[str, Any]:
    if part.kind == "text":
        return {"type": "text", "text": part.text}
    if part.kind == "image":
        return _image_block(part.image_url)
    if part.kind == "tool_call":
        return {"type": "tool_use", "id": part.call_id, "name": part.name, "input": part.arguments}
    return {"type": "tool_result", "tool_use_id": part.call_id, "content": part.text}


def _tool_choice(request: ChatRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    if choice is None:
        return None
    if isinstance(choice, str):
        return {"type": {"auto": "auto", "required": "any", "none": "none"}[choice]}
    return {"type": "tool", "name": choice.function.name}


def to_messages_request(request: ChatRequest, model: str) -> dict[str, Any]:
    """The Messages API body for an OpenAI request."""
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
    if request.tools and request.tool_choice != "none":
        body["tools"] = [
            {
                "name": t.function.name,
                "description": t.function.description or "",
                "input_schema": t.function.parameters or {"type": "object", "properties": {}},
            }
            for t in request.tools
        ]
        choice = _tool_choice(request)
        if choice is not None:
            body["tool_choice"] = choice
    return body


def _sampling(request: ChatRequest) -> dict[str, Any]:
    """Sampling fields the SDK takes only as extra body; 0 stays 0."""
    extra: dict[str, Any] = {}
    if request.temperature is not None:
        extra["temperature"] = min(request.temperature, 1.0)
    if request.top_p is not None:
        extra["top_p"] = request.top_p
    return extra


class AnthropicAdapter:
    provider = "anthropic"

    def __init__(self, endpoint: EndpointConfig) -> None:
        self.model = endpoint.model
        self.base_url = endpoint.base_url or "https://api.anthropic.com"
        self._client = anthropic.AsyncAnthropic(
            api_key=endpoint.api_key() or "unused",
            base_url=self.base_url,
            timeout=endpoint.timeout_s,
            max_retries=0,
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

    async def complete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        try:
            message = await self._client.messages.create(**self._arguments(request, ctx))
        except anthropic.AnthropicError as exc:
            raise map_anthropic_error(exc, self.base_url) from None
        text: list[str] = []
        calls: list[ToolCall] = []
        for block in message.content:
            if block.type == "text":
                text.append(block.text)
            elif block.type == "tool_use":
                calls.append(
                    ToolCall(id=block.id, function=FunctionCall(name=block.name, arguments=json.dumps(block.input)))
                )
        finish = "tool_calls" if calls else STOP_REASONS.get(str(message.stop_reason), "stop")
        usage = Usage.of(message.usage.input_tokens, message.usage.output_tokens)
        reply = AssistantMessage(content="".join(text) if text or not calls else None, tool_calls=calls or None)
        return ChatCompletion(
            model=self.model,
            choices=[Choice(message=reply, finish_reason=finish)],
            usage=usage,
        )

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatCompletionChunk]:
        tool_index: dict[int, int] = {}  # Anthropic block index -> OpenAI tool-call index
        prompt_tokens = output_tokens = 0
        stop_reason: str | None = None
        try:
            events = await self._client.messages.create(stream=True, **self._arguments(request, ctx))
            async for event in events:
                if event.type == "message_start":
                    prompt_tokens = event.message.usage.input_tokens
                    output_tokens = event.message.usage.output_tokens
                elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                    tool_index[event.index] = len(tool_index)
                    block = event.content_block
                    yield tool_head_chunk(
                        tool_index[event.index], block.id or f"call_{uuid.uuid4().hex[:12]}", block.name
                    )
                elif event.type == "content_block_delta":
                    if event.delta.type == "text_delta" and event.delta.text:
                        yield text_chunk(event.delta.text)
                    elif event.delta.type == "input_json_delta" and event.delta.partial_json:
                        yield tool_arguments_chunk(tool_index[event.index], event.delta.partial_json)
                elif event.type == "message_delta":
                    stop_reason = event.delta.stop_reason
                    output_tokens = event.usage.output_tokens  # cumulative
        except anthropic.AnthropicError as exc:
            raise map_anthropic_error(exc, self.base_url) from None
        if stop_reason is None:
            raise upstream_failure("the Anthropic stream ended without a stop reason")
        yield finish_chunk("tool_calls" if tool_index else STOP_REASONS.get(stop_reason, "stop"))
        yield usage_chunk(Usage.of(prompt_tokens, output_tokens))


def _message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return exc.message


def map_anthropic_error(exc: anthropic.AnthropicError, base_url: str) -> APIError:
    if isinstance(exc, anthropic.APITimeoutError):
        return timed_out(f"Anthropic at {base_url} did not answer in time")
    if isinstance(exc, anthropic.APIConnectionError):
        return upstream_failure(f"cannot reach Anthropic at {base_url}")
    if not isinstance(exc, anthropic.APIStatusError):
        return upstream_failure(f"Anthropic stream failed: {getattr(exc, 'message', None) or type(exc).__name__}")
    status, message = exc.status_code, f"anthropic: {_message(exc)}"
    if status == 400:
        return bad_request(message, code="upstream_bad_request")
    if status in (401, 403):
        return upstream_auth(message, status)
    if status == 404:
        return not_found(message)
    if status == 413:
        return APIError(413, message, type="invalid_request_error", code="request_too_large")
    if status == 429:
        return rate_limited(message, exc.response.headers.get("retry-after"))
    if status == 529:
        # Overloaded: retryable, and a 503 says so to any OpenAI client.
        return APIError(
            503,
            message,
            type="upstream_error",
            code="upstream_overloaded",
            retry_after=exc.response.headers.get("retry-after"),
        )
    return upstream_failure(message)
