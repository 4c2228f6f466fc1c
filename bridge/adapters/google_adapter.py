"""The `google` provider: OpenAI Chat Completions translated to and from Gemini generateContent.

System messages become `system_instruction`; roles are user/model; assistant tool calls become
`function_call` parts (arguments as objects) and tool messages `function_response` parts named
after the call they answer; `finishReason` maps to `finish_reason`, with `tool_calls` whenever
the turn called a function (Gemini itself says STOP).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

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

__all__ = ["FINISH_REASONS", "GoogleAdapter"]

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys(
        ("SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"), "content_filter"
    ),
}


def _part(part: Part) -> dict[str, Any]:
    if part.kind == "text":
        return {"text": part.text}
    if part.kind == "image":
        if part.image_url.startswith("data:") and ";base64," in part.image_url:
            mime, data = part.image_url[5:].split(";base64,", 1)
            return {"inline_data": {"mime_type": mime, "data": base64.b64decode(data)}}
        return {"file_data": {"file_uri": part.image_url}}
    if part.kind == "tool_call":
        return {"function_call": {"name": part.name, "args": part.arguments}}
    try:
        response = json.loads(part.text)
    except json.JSONDecodeError:
        response = None
    if not isinstance(response, dict):
        response = {"result": part.text}
    return {"function_response": {"name": part.name or part.call_id, "response": response}}


def _tool_config(request: ChatRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    if choice is None:
        return None
    if isinstance(choice, str):
        return {"function_calling_config": {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}[choice]}}
    return {"function_calling_config": {"mode": "ANY", "allowed_function_names": [choice.function.name]}}


def to_gemini_request(request: ChatRequest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(contents, config) for generateContent."""
    system, turns = split_conversation(request.messages)
    if not turns:
        raise bad_request("the conversation needs at least one user or assistant message", param="messages")
    contents = [
        {"role": "model" if t.role == "assistant" else "user", "parts": [_part(p) for p in t.parts]} for t in turns
    ]
    config: dict[str, Any] = {"automatic_function_calling": {"disable": True}}
    if system:
        config["system_instruction"] = system
    for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"), ("seed", "seed")):
        value = getattr(request, ours)
        if value is not None:
            config[theirs] = value
    if request.token_limit is not None:
        config["max_output_tokens"] = request.token_limit
    if request.stop_list:
        config["stop_sequences"] = request.stop_list
    if request.tools:
        config["tools"] = [
            {
                "function_declarations": [
                    {
                        "name": t.function.name,
                        "description": t.function.description or "",
                        **({"parameters_json_schema": t.function.parameters} if t.function.parameters else {}),
                    }
                    for t in request.tools
                ]
            }
        ]
        tool_config = _tool_config(request)
        if tool_config is not None:
            config["tool_config"] = tool_config
    response_format = request.response_format
    if response_format is not None and response_format.type != "text":
        config["response_mime_type"] = "application/json"
        schema = (response_format.json_schema or {}).get("schema")
        if schema:
            config["response_json_schema"] = schema
    return contents, config


def _finish(reason: Any, called: bool) -> str:
    name = getattr(reason, "name", None) or str(reason or "STOP")
    return "tool_calls" if called else FINISH_REASONS.get(name, "stop")


def _usage(metadata: Any) -> Usage | None:
    if metadata is None:
        return None
    return Usage.of(metadata.prompt_token_count or 0, metadata.candidates_token_count or 0)


def _call_id(call: Any) -> str:
    return call.id or f"call_{uuid.uuid4().hex[:24]}"


class GoogleAdapter:
    provider = "google"

    def __init__(self, endpoint: EndpointConfig) -> None:
        self.model = endpoint.model
        self.base_url = endpoint.base_url or "https://generativelanguage.googleapis.com"
        # The timeout is in milliseconds. v1beta is pinned: it is the API whose wire format (tools,
        # systemInstruction, SSE streaming) we translate to, whatever the SDK's default version is.
        options: dict[str, Any] = {"timeout": int(endpoint.timeout_s * 1000), "api_version": "v1beta"}
        if endpoint.base_url:
            options["base_url"] = endpoint.base_url
        self._client = genai.Client(api_key=endpoint.api_key() or "unused", http_options=types.HttpOptions(**options))

    async def aclose(self) -> None:
        await self._client.aio.aclose()

    def _config(
        self, request: ChatRequest, ctx: CallContext
    ) -> tuple[list[types.Content], types.GenerateContentConfig]:
        contents, config = to_gemini_request(request)
        if ctx.trace_headers():
            config["http_options"] = {"headers": ctx.trace_headers()}
        return [types.Content.model_validate(c) for c in contents], types.GenerateContentConfig.model_validate(config)

    async def complete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        contents, config = self._config(request, ctx)
        try:
            response = await self._client.aio.models.generate_content(
                model=self.model, contents=contents, config=config
            )
        except (genai_errors.APIError, httpx2.HTTPError) as exc:
            raise map_google_error(exc, self.base_url) from None
        text: list[str] = []
        calls: list[ToolCall] = []
        candidate = response.candidates[0] if response.candidates else None
        parts = candidate.content.parts if candidate and candidate.content and candidate.content.parts else []
        for part in parts:
            if part.function_call is not None:
                calls.append(
                    ToolCall(
                        id=_call_id(part.function_call),
                        function=FunctionCall(
                            name=part.function_call.name or "", arguments=json.dumps(part.function_call.args or {})
                        ),
                    )
                )
            elif part.text and not part.thought:
                text.append(part.text)
        finish = _finish(candidate.finish_reason if candidate else None, bool(calls))
        message = AssistantMessage(content="".join(text) if text or not calls else None, tool_calls=calls or None)
        return ChatCompletion(
            model=self.model,
            choices=[Choice(message=message, finish_reason=finish)],
            usage=_usage(response.usage_metadata) or Usage(),
        )

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatCompletionChunk]:
        contents, config = self._config(request, ctx)
        calls = 0
        finish_reason: Any = None
        usage: Usage | None = None
        try:
            chunks = await self._client.aio.models.generate_content_stream(
                model=self.model, contents=contents, config=config
            )
            async for chunk in chunks:
                usage = _usage(chunk.usage_metadata) or usage
                candidate = chunk.candidates[0] if chunk.candidates else None
                if candidate is None:
                    continue
                parts = candidate.content.parts if candidate.content and candidate.content.parts else []
                for part in parts:
                    if part.function_call is not None:
                        # Gemini sends a call whole: a head delta, then its arguments in one piece.
                        yield tool_head_chunk(calls, _call_id(part.function_call), part.function_call.name or "")
                        yield tool_arguments_chunk(calls, json.dumps(part.function_call.args or {}))
                        calls += 1
                    elif part.text and not part.thought:
                        yield text_chunk(part.text)
                if candidate.finish_reason is not None:
                    finish_reason = candidate.finish_reason
        except (genai_errors.APIError, httpx2.HTTPError) as exc:
            raise map_google_error(exc, self.base_url) from None
        if finish_reason is None:
            raise upstream_failure("the Gemini stream ended without a finish reason")
        yield finish_chunk(_finish(finish_reason, calls > 0))
        if usage is not None:
            yield usage_chunk(usage)


def map_google_error(exc: Exception, base_url: str) -> APIError:
    if isinstance(exc, httpx2.TimeoutException):
        return timed_out(f"Gemini at {base_url} did not answer in time")
    if isinstance(exc, httpx2.HTTPError):
        return upstream_failure(f"cannot reach Gemini at {base_url}")
    assert isinstance(exc, genai_errors.APIError)
    status, message = int(exc.code or 502), f"google: {exc.message or exc.status or 'error'}"
    headers = getattr(exc.response, "headers", None) or {}
    if status == 400:
        return bad_request(message, code="upstream_bad_request")
    if status in (401, 403):
        return upstream_auth(message, status)
    if status == 404:
        return not_found(message)
    if status == 429:
        return rate_limited(message, headers.get("retry-after"))
    if status in (408, 504):
        return timed_out(message)
    return upstream_failure(message)
