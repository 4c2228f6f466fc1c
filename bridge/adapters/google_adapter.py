"""The `google` provider: OpenAI Chat Completions translated to and from Gemini generateContent.

System messages become `system_instruction`; roles are user/model; assistant tool calls become
`function_call` parts (arguments as objects) and tool messages `function_response` parts named
after the call they answer; `finishReason` maps to `finish_reason`, with `tool_calls` whenever
the turn called a function (Gemini itself says STOP). Failures of the SDK, of either of its HTTP
stacks (aiohttp when installed, else httpx2) and of Gemini itself become `APIError`s.

    endpoint = EndpointConfig(id="g", provider="google", model="gemini-2.5-flash", api_key_env="GEMINI_KEY")
    adapter = GoogleAdapter(endpoint)
    completion = await adapter.complete(request, CallContext())
    await adapter.aclose()
"""

from __future__ import annotations

import base64
import json
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import httpx2
import pydantic
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from bridge.adapters.base import CallContext, refuse_logprobs
from bridge.adapters.chunks import finish_chunk, text_chunk, tool_arguments_chunk, tool_head_chunk, usage_chunk
from bridge.adapters.turns import Part, split_conversation
from bridge.endpoint import EndpointConfig
from bridge.errors import APIError, bad_request, from_status, redact, timed_out, upstream_auth, upstream_failure
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

__all__ = ["FINISH_REASONS", "GoogleAdapter", "map_google_error", "to_gemini_request"]

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    **dict.fromkeys(
        (
            "SAFETY",
            "RECITATION",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT",
            "IMAGE_RECITATION",
            "MODEL_ARMOR",
        ),
        "content_filter",
    ),
}
# Everything a call through the SDK can raise that is the upstream's fault, not ours.
_UPSTREAM_FAILURES = (
    genai_errors.APIError,
    genai_errors.UnknownApiResponseError,
    pydantic.ValidationError,
    json.JSONDecodeError,
    httpx2.HTTPError,
    aiohttp.ClientError,
    TimeoutError,
)
SignatureLookup = Callable[[str], bytes | None]


class _SignatureMemo:
    """Thought signatures of the function calls this bridge returned, by call id (bounded, oldest dropped).

    Gemini 3 rejects a replayed function call without the `thoughtSignature` it came with, and an
    OpenAI client echoes back only the call id; so the bridge keeps the signature for the replay.
    """

    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = capacity
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def remember(self, call_id: str, signature: bytes | None) -> None:
        if not signature:
            return
        self._items[call_id] = signature
        self._items.move_to_end(call_id)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def recall(self, call_id: str) -> bytes | None:
        return self._items.get(call_id)


def _part(part: Part, signature_of: SignatureLookup) -> dict[str, Any]:
    if part.kind == "text":
        return {"text": part.text}
    if part.kind == "image":
        if part.image_url.startswith("data:") and ";base64," in part.image_url:
            mime, data = part.image_url[5:].split(";base64,", 1)
            return {"inline_data": {"mime_type": mime, "data": base64.b64decode(data)}}
        return {"file_data": {"file_uri": part.image_url}}
    if part.kind == "tool_call":
        call: dict[str, Any] = {"function_call": {"name": part.name, "args": part.arguments}}
        signature = signature_of(part.call_id)
        if signature:
            call["thought_signature"] = signature
        return call
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


def to_gemini_request(
    request: ChatRequest, signature_of: SignatureLookup = lambda _: None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(contents, config) for generateContent, in the SDK's snake_case field names."""
    refuse_logprobs(request, "google")
    system, turns = split_conversation(request.messages)
    if not turns:
        raise bad_request("the conversation needs at least one user or assistant message", param="messages")
    contents = [
        {"role": "model" if t.role == "assistant" else "user", "parts": [_part(p, signature_of) for p in t.parts]}
        for t in turns
    ]
    # The bridge answers with the model's calls; running them is the client's business.
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
    if called:
        return "tool_calls"
    name = getattr(reason, "name", None) or str(reason or "STOP")
    return FINISH_REASONS.get(name, "stop")


def _blocked(response: types.GenerateContentResponse) -> bool:
    """A prompt Gemini refused outright: no candidates, a `promptFeedback.blockReason`."""
    return bool(response.prompt_feedback and response.prompt_feedback.block_reason)


def _usage(metadata: types.GenerateContentResponseUsageMetadata | None) -> Usage | None:
    if metadata is None:
        return None
    return Usage.of(metadata.prompt_token_count or 0, metadata.candidates_token_count or 0)


def _call_id(call: types.FunctionCall) -> str:
    return call.id or f"call_{uuid.uuid4().hex[:24]}"


def _parts(response: types.GenerateContentResponse) -> tuple[types.Candidate | None, list[types.Part]]:
    candidate = response.candidates[0] if response.candidates else None
    parts = candidate.content.parts if candidate and candidate.content and candidate.content.parts else []
    return candidate, parts


class GoogleAdapter:
    """One Gemini model behind one `genai.Client` (one connection pool) for the life of the bridge."""

    provider = "google"

    def __init__(self, endpoint: EndpointConfig) -> None:
        self.model = endpoint.model
        self.base_url = endpoint.base_url or "https://generativelanguage.googleapis.com"
        self._key = endpoint.api_key()
        # The timeout is in milliseconds. v1beta is pinned: it is the API whose wire format (tools,
        # systemInstruction, SSE streaming) we translate to, whatever the SDK's default version is.
        # One attempt: the router retries within its deadline, and the SDK would otherwise retry a
        # refused connection after sleeping 1-10 s.
        options = types.HttpOptions(
            timeout=_milliseconds(endpoint.timeout_s),
            api_version="v1beta",
            base_url=endpoint.base_url,
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self._client = genai.Client(api_key=self._key or "unused", http_options=options)
        self._signatures = _SignatureMemo()

    async def aclose(self) -> None:
        await self._client.aio.aclose()

    def _request(
        self, request: ChatRequest, ctx: CallContext
    ) -> tuple[list[types.Content], types.GenerateContentConfig]:
        contents, config = to_gemini_request(request, self._signatures.recall)
        per_call: dict[str, Any] = {}
        if ctx.trace_headers():
            per_call["headers"] = ctx.trace_headers()
        if ctx.timeout_s is not None:
            per_call["timeout"] = _milliseconds(ctx.timeout_s)
        if per_call:
            config["http_options"] = per_call
        return [types.Content.model_validate(c) for c in contents], types.GenerateContentConfig.model_validate(config)

    def _tool_call(self, call: types.FunctionCall, signature: bytes | None) -> tuple[str, str, str]:
        """(id, name, JSON arguments) of one function call, remembering its thought signature."""
        call_id = _call_id(call)
        self._signatures.remember(call_id, signature)
        return call_id, call.name or "", json.dumps(call.args or {})

    async def complete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        contents, config = self._request(request, ctx)
        try:
            response = await self._client.aio.models.generate_content(
                model=self.model, contents=contents, config=config
            )
        except _UPSTREAM_FAILURES as exc:
            raise map_google_error(exc, self.base_url, self._key) from None
        text: list[str] = []
        calls: list[ToolCall] = []
        candidate, parts = _parts(response)
        for part in parts:
            if part.function_call is not None:
                call_id, name, arguments = self._tool_call(part.function_call, part.thought_signature)
                calls.append(ToolCall(id=call_id, function=FunctionCall(name=name, arguments=arguments)))
            elif part.text and not part.thought:
                text.append(part.text)
        if candidate is None and _blocked(response):
            finish = "content_filter"
        else:
            finish = _finish(candidate.finish_reason if candidate else None, bool(calls))
        message = AssistantMessage(content="".join(text) if text or not calls else None, tool_calls=calls or None)
        return ChatCompletion(
            model=self.model,
            choices=[Choice(message=message, finish_reason=finish)],
            usage=_usage(response.usage_metadata) or Usage(),
        )

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatCompletionChunk]:
        contents, config = self._request(request, ctx)
        calls = 0
        finish: str | None = None
        usage: Usage | None = None
        try:
            chunks = await self._client.aio.models.generate_content_stream(
                model=self.model, contents=contents, config=config
            )
            async for chunk in chunks:
                usage = _usage(chunk.usage_metadata) or usage
                candidate, parts = _parts(chunk)
                if candidate is None:
                    if _blocked(chunk):
                        finish = "content_filter"
                    continue
                for part in parts:
                    if part.function_call is not None:
                        # Gemini sends a call whole: a head delta, then its arguments in one piece.
                        call_id, name, arguments = self._tool_call(part.function_call, part.thought_signature)
                        yield tool_head_chunk(calls, call_id, name)
                        yield tool_arguments_chunk(calls, arguments)
                        calls += 1
                    elif part.text and not part.thought:
                        yield text_chunk(part.text)
                if candidate.finish_reason is not None:
                    # The call may have come chunks before the finishReason: `calls` spans the turn.
                    finish = _finish(candidate.finish_reason, calls > 0)
        except _UPSTREAM_FAILURES as exc:
            raise map_google_error(exc, self.base_url, self._key) from None
        if finish is None:
            raise upstream_failure("the Gemini stream ended without a finish reason")
        yield finish_chunk(finish)
        if usage is not None:
            yield usage_chunk(usage)


def _milliseconds(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def _reasons(details: Any) -> set[str]:
    """The `reason`s of the google.rpc.ErrorInfo entries in a Google error body."""
    error = details.get("error", details) if isinstance(details, dict) else None
    entries = error.get("details") if isinstance(error, dict) else None
    return {str(d["reason"]) for d in entries or [] if isinstance(d, dict) and d.get("reason")}


def _retry_after(response: Any) -> str | None:
    headers = getattr(response, "headers", None) or {}
    return next((str(v) for k, v in headers.items() if str(k).lower() == "retry-after"), None)


def map_google_error(exc: Exception, base_url: str, key: str | None = None) -> APIError:
    """The OpenAI-facing error for a failed Gemini call; the key never appears in it."""
    if isinstance(exc, TimeoutError | httpx2.TimeoutException):
        return timed_out(f"Gemini at {base_url} did not answer in time")
    if isinstance(exc, httpx2.HTTPError | aiohttp.ClientError):
        return upstream_failure(f"the connection to Gemini at {base_url} failed")
    if not isinstance(exc, genai_errors.APIError):
        return upstream_failure(f"Gemini at {base_url} sent a malformed answer")
    message = redact(f"google: {exc.message or exc.status or 'error'}", key)
    status = int(exc.code or 502)
    if status == 400 and "API_KEY_INVALID" in _reasons(exc.details):
        # Google answers a bad key with 400 INVALID_ARGUMENT; the request itself was fine.
        return upstream_auth(message, 401)
    return from_status(status, message, retry_after=_retry_after(exc.response))
