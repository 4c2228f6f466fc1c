"""The openai adapter's requests through the official SDK: how a bridge reaches its model.

One `AsyncOpenAI` client (one connection pool) per adapter, with the SDK's own retries off: the
router retries with its own deadline, and a bridge must report an upstream failure as it is. The
body is already OpenAI's wire format, so it goes out through the SDK's generic
`client.post("/chat/completions", body=...)`, which sends it as it is: `chat.completions.create`
would first walk every message against the SDK's TypedDicts, a sizeable share of a bridge's CPU per
request (docs/benchmarks.md). Auth, base URL, timeouts, the SSE reader and the error types are the
SDK's either way.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from bridge.adapters.base import CallContext
from bridge.adapters.openai_sdk import openai  # the SDK's client and errors without all of `openai.types`
from bridge.adapters.openai_transport import (
    connection_failed,
    display_url,
    malformed,
    status_error,
    stream_error,
    too_slow,
    upstream_base_url,
)
from bridge.endpoint import EndpointConfig
from bridge.errors import APIError

__all__ = ["SdkTransport", "map_openai_error"]


class SdkTransport:
    """A `Transport` over `openai.AsyncOpenAI`."""

    def __init__(self, endpoint: EndpointConfig) -> None:
        self._secret = endpoint.api_key()
        self._client = openai.AsyncOpenAI(
            # A local server usually wants no key, but the SDK refuses to start without one.
            api_key=self._secret or "unused",
            base_url=upstream_base_url(endpoint.base_url),
            timeout=endpoint.timeout_s,
            max_retries=0,
        )
        self.base_url = display_url(str(self._client.base_url))

    async def aclose(self) -> None:
        await self._client.close()

    async def post(self, body: dict[str, Any], ctx: CallContext) -> object:
        try:
            # cast_to=object: the SDK hands back the decoded JSON (or the text of a non-JSON answer).
            return await self._client.post("/chat/completions", cast_to=object, body=body, options=_options(ctx))
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, self.base_url, secret=self._secret) from None
        except ValueError:
            raise malformed(self.base_url, stream=False) from None

    async def stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncGenerator[object, None]:
        started = False
        try:
            upstream = await self._client.post(
                "/chat/completions",
                cast_to=object,
                body=body,
                options=_options(ctx),
                stream=True,
                stream_cls=openai.AsyncStream[object],
            )
            started = True
            async with upstream:
                async for frame in upstream:
                    yield frame
        except openai.OpenAIError as exc:
            raise map_openai_error(exc, self.base_url, secret=self._secret, mid_stream=started) from None
        except ValueError:  # a frame that is not JSON
            raise malformed(self.base_url, stream=True) from None


def _options(ctx: CallContext) -> openai.RequestOptions:
    options: openai.RequestOptions = {}
    headers = ctx.trace_headers()
    if headers:
        options["headers"] = headers
    if ctx.timeout_s is not None:
        options["timeout"] = ctx.timeout_s
    return options


def map_openai_error(
    exc: openai.OpenAIError, base_url: str, *, secret: str | None = None, mid_stream: bool = False
) -> APIError:
    """An SDK exception as the status and OpenAI error body the client should see; `secret` is scrubbed."""
    if isinstance(exc, openai.APITimeoutError):
        return too_slow(base_url)
    if isinstance(exc, openai.APIConnectionError):
        return connection_failed(base_url, mid_stream=mid_stream)
    if isinstance(exc, openai.APIStatusError):
        # The SDK hands over the error object itself, not the {"error": ...} envelope.
        return status_error(exc.status_code, exc.body, exc.message, exc.response.headers, base_url, secret)
    # Errors the SDK raises itself: an error frame in the middle of a stream.
    return stream_error({"message": getattr(exc, "message", None) or type(exc).__name__}, base_url, secret)
