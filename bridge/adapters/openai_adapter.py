"""The `openai` and `openai-compatible` providers: the request passes through, errors are mapped.

One `AsyncOpenAI` client (one connection pool) per adapter. The SDK's own retries are off: the
router retries with its own deadline, and a bridge must report an upstream failure as it is.
The router also uses this adapter to reach its bridges.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
from pydantic import ValidationError

from bridge.adapters.base import CallContext
from bridge.endpoint import EndpointConfig
from bridge.errors import APIError, from_openai_status, timed_out, upstream_failure
from bridge.protocol import ChatCompletion, ChatCompletionChunk, ChatRequest

__all__ = ["OpenAIAdapter", "map_openai_error"]

# `model`, `messages` and `stream` are named arguments of the SDK call; everything else rides in extra_body.
_NAMED = {"model", "messages", "stream"}


class OpenAIAdapter:
    def __init__(self, endpoint: EndpointConfig) -> None:
        self.provider: str = endpoint.provider
        self.model = endpoint.model
        self.base_url = endpoint.base_url or "https://api.openai.com/v1"
        self._client = openai.AsyncOpenAI(
            api_key=endpoint.api_key() or "unused",
            base_url=self.base_url,
            timeout=endpoint.timeout_s,
            max_retries=0,
        )

    async def aclose(self) -> None:
        await self._client.close()

    def _arguments(self, request: ChatRequest, ctx: CallContext, *, stream: bool) -> dict[str, Any]:
        body = request.upstream_dict()
        extra = {k: v for k, v in body.items() if k not in _NAMED}
        if stream:
            # Always ask for usage upstream; the bridge decides whether the client sees it.
            extra["stream_options"] = {**extra.get("stream_options", {}), "include_usage": True}
        else:
            extra.pop("stream_options", None)
        arguments: dict[str, Any] = {
            "model": self.model,
            "messages": body["messages"],
            "extra_body": extra,
            "extra_headers": ctx.trace_headers() or None,
        }
        if ctx.timeout_s is not None:
            arguments["timeout"] = ctx.timeout_s
        return arguments

    async def complete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                **self._arguments(request, ctx, stream=False)
            )
            data = raw.http_response.json()
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, self.base_url) from None
        except ValueError:
            raise upstream_failure("upstream answered with malformed JSON") from None
        try:
            return ChatCompletion.model_validate(data)
        except ValidationError:
            raise upstream_failure("upstream answered with something that is not a chat.completion") from None

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatCompletionChunk]:
        try:
            upstream = await self._client.chat.completions.create(
                stream=True, **self._arguments(request, ctx, stream=True)
            )
            async with upstream:
                async for chunk in upstream:
                    yield ChatCompletionChunk.model_validate(chunk.model_dump(exclude_none=True))
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, self.base_url) from None
        except ValidationError:
            raise upstream_failure("upstream sent a chunk that is not a chat.completion.chunk") from None


def map_openai_error(exc: openai.OpenAIError, base_url: str) -> APIError:
    """An SDK exception as the status and OpenAI error body the client should see."""
    if isinstance(exc, openai.APITimeoutError):
        return timed_out(f"upstream at {base_url} did not answer in time")
    if isinstance(exc, openai.APIConnectionError):
        return upstream_failure(f"cannot reach upstream at {base_url}")
    if not isinstance(exc, openai.APIStatusError):
        # Errors the SDK raises itself, e.g. an error frame in the middle of a stream.
        return upstream_failure(f"upstream failed: {getattr(exc, 'message', None) or type(exc).__name__}")
    body = exc.body if isinstance(exc.body, dict) and exc.body else {"message": exc.message}
    # The SDK hands over the error object itself, not the {"error": ...} envelope.
    envelope = body if "error" in body else {"error": body}
    return from_openai_status(exc.status_code, envelope, exc.response.headers.get("retry-after"))
