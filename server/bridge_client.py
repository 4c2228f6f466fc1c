"""The router's client for its own bridges: one aiohttp connection pool per bridge, nothing more.

A bridge already speaks the ChatAdapter contract on the wire (it normalised its provider's answer,
mapped its errors and scrubbed its key), so this client only moves JSON: the router has its own
retries and deadlines and parses answers into `bridge.protocol` models. aiohttp does that HTTP
for a fraction of the SDK's CPU (docs/benchmarks.md). Anything that is not one of our bridges is
reached through the provider adapters (`bridge.adapters`), as a bridge would reach it.

    client = BridgeClient("http://127.0.0.1:9101/v1", model="fast", timeout_s=120)
    completion = await client.complete(request, ctx)
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from pydantic import ValidationError

from bridge.adapters.base import CallContext
from bridge.adapters.openai_via_aiohttp import body_lines
from bridge.errors import APIError, from_openai_status, not_ready, timed_out, upstream_failure
from bridge.protocol import ChatCompletion, ChatCompletionChunk, ChatRequest

__all__ = ["BridgeClient"]


class BridgeClient:
    """A `ChatAdapter` over plain HTTP to one fusionkit bridge."""

    provider = "bridge"

    def __init__(self, base_url: str, *, model: str, timeout_s: float, api_key: str | None = None) -> None:
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.base_url = base_url
        self._headers = {"content-type": "application/json"}
        if api_key:
            self._headers["authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use: a session belongs to the running event loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=256, limit_per_host=256)
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers, timeout=self._timeout)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _body(self, request: ChatRequest, *, stream: bool) -> bytes:
        body: dict[str, Any] = {**request.upstream_dict(), "model": self.model, "stream": stream}
        if stream:
            body["stream_options"] = {"include_usage": True}
        else:
            body.pop("stream_options", None)
        return json.dumps(body).encode()

    def _error(self, exc: BaseException) -> APIError:
        if isinstance(exc, TimeoutError):
            return timed_out(f"the bridge at {self.base_url} did not answer in time")
        if isinstance(exc, aiohttp.ClientConnectorError):
            # Nothing listens: the bridge is down or restarting (`up` restarts it), which is "not ready", not a failure.
            return not_ready(f"the bridge for '{self.model}' at {self.base_url} is not reachable; it may be restarting")
        return upstream_failure(f"the connection to the bridge at {self.base_url} failed")

    @staticmethod
    async def _raise_for(response: aiohttp.ClientResponse) -> None:
        if response.status == 200:
            return
        text = await response.text(errors="replace")
        retry_after = response.headers.get("retry-after")
        try:
            error = json.loads(text)["error"]
            # The bridge's error is already the one the client should see: passed on as it is.
            raise APIError(
                response.status,
                str(error["message"]),
                type=str(error["type"]),
                code=error.get("code"),
                param=error.get("param"),
                retry_after=retry_after,
            )
        except (ValueError, KeyError, TypeError):
            # Not a bridge's answer (a proxy in between, say): mapped by its status.
            raise from_openai_status(
                response.status, {"error": {"message": text[:300]}}, retry_after, label="bridge"
            ) from None

    async def complete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        try:
            async with self._http().post(
                self.url, data=self._body(request, stream=False), headers=ctx.trace_headers()
            ) as response:
                await self._raise_for(response)
                raw = await response.read()
            return ChatCompletion.model_validate_json(raw)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._error(exc) from None
        except ValidationError:
            raise upstream_failure(
                f"the bridge at {self.base_url} answered with something that is not a chat.completion"
            ) from None

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatCompletionChunk]:
        try:
            async with self._http().post(
                self.url, data=self._body(request, stream=True), headers=ctx.trace_headers()
            ) as response:
                await self._raise_for(response)
                async for raw in body_lines(response.content):  # lines of any length
                    line = raw.decode("utf-8", "replace").strip()
                    if not line.startswith("data:"):
                        continue  # blank lines and SSE comments
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    payload = json.loads(data)
                    if "error" in payload:
                        message = (payload["error"] or {}).get("message", "the stream failed")
                        raise upstream_failure(str(message))
                    yield ChatCompletionChunk.model_validate(payload)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise self._error(exc) from None
        except (ValueError, ValidationError):
            raise upstream_failure(f"the bridge at {self.base_url} sent a malformed stream frame") from None
