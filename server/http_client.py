"""The router's OpenAI-compatible HTTP client: one connection pool per endpoint, nothing more.

The router reaches bridges and OpenAI-compatible servers with this rather than the openai SDK:
profiling a fused request showed more than half of the router's CPU inside the SDK's request
machinery (options, retries, response parsing), which the router does not need — it has its own
retries and deadlines, and parses answers into `bridge.protocol` models anyway.

    client = OpenAIHTTPClient("http://127.0.0.1:9101/v1", model="fast", timeout_s=120)
    completion = await client.complete(request, ctx)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from pydantic import ValidationError

from bridge.adapters.base import CallContext
from bridge.errors import APIError, from_openai_status, timed_out, upstream_failure
from bridge.protocol import ChatCompletion, ChatCompletionChunk, ChatRequest

__all__ = ["OpenAIHTTPClient"]


class OpenAIHTTPClient:
    """A `ChatAdapter` over plain HTTP to any OpenAI Chat Completions server."""

    provider = "openai-compatible"

    def __init__(self, base_url: str, *, model: str, timeout_s: float, api_key: str | None = None) -> None:
        self.model = model
        self.base_url = base_url.rstrip("/")
        headers = {"content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._http = httpx2.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=timeout_s,
            limits=httpx2.Limits(max_connections=256, max_keepalive_connections=64),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def _body(self, request: ChatRequest, *, stream: bool) -> bytes:
        body: dict[str, Any] = {**request.upstream_dict(), "model": self.model, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        else:
            body.pop("stream_options", None)
        return json.dumps(body).encode()

    def _error(self, exc: httpx2.HTTPError) -> APIError:
        if isinstance(exc, httpx2.TimeoutException):
            return timed_out(f"upstream at {self.base_url} did not answer in time")
        return upstream_failure(f"cannot reach upstream at {self.base_url}")

    async def _raise_for(self, response: httpx2.Response) -> None:
        if response.status_code == 200:
            return
        await response.aread()
        try:
            body = response.json()
        except ValueError:
            body = {"error": {"message": response.text[:300]}}
        raise from_openai_status(response.status_code, body, response.headers.get("retry-after"))

    async def complete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        try:
            response = await self._http.post(
                "/chat/completions",
                content=self._body(request, stream=False),
                headers=ctx.trace_headers(),
                timeout=ctx.timeout_s or httpx2.USE_CLIENT_DEFAULT,
            )
            await self._raise_for(response)
            return ChatCompletion.model_validate_json(response.content)
        except httpx2.HTTPError as exc:
            raise self._error(exc) from None
        except ValidationError:
            raise upstream_failure("upstream answered with something that is not a chat.completion") from None

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatCompletionChunk]:
        try:
            async with self._http.stream(
                "POST", "/chat/completions", content=self._body(request, stream=True), headers=ctx.trace_headers()
            ) as response:
                await self._raise_for(response)
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # blank lines and SSE comments
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    payload = json.loads(data)
                    if "error" in payload:
                        message = (payload["error"] or {}).get("message", "upstream stream failed")
                        raise upstream_failure(f"upstream: {message}")
                    yield ChatCompletionChunk.model_validate(payload)
        except httpx2.HTTPError as exc:
            raise self._error(exc) from None
        except (ValueError, ValidationError):
            raise upstream_failure("upstream sent a malformed stream frame") from None
