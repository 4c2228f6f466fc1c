"""The openai adapter's requests over aiohttp: how the router reaches an endpoint in-process.

The router under `fusionkit serve` makes several upstream calls per fused request and already runs
aiohttp for its bridges; the SDK's httpx stack costs several times aiohttp's CPU per call
(docs/benchmarks.md). What the SDK decides is kept: the base URL (configured, else
OPENAI_BASE_URL, else OpenAI's), the bearer key (credentials in the URL win, as in httpx), a
timeout per connect and per read, any non-2xx as an error read as the SDK reads it
(`sdk_error_parts`), a non-JSON answer handed back as text, and SSE as the SDK's decoder reads it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from bridge.adapters.base import CallContext
from bridge.adapters.openai_transport import (
    connection_failed,
    display_url,
    malformed,
    sdk_error_parts,
    status_error,
    stream_error,
    too_slow,
    upstream_base_url,
)
from bridge.endpoint import EndpointConfig

__all__ = ["AiohttpTransport", "body_lines"]


class AiohttpTransport:
    """A `Transport` over one aiohttp session (one connection pool)."""

    def __init__(self, endpoint: EndpointConfig) -> None:
        base = upstream_base_url(endpoint.base_url).rstrip("/")
        self.url = f"{base}/chat/completions"
        self.base_url = display_url(base)
        self._secret = endpoint.api_key()
        self._headers = {"content-type": "application/json", "accept": "application/json"}
        if self._secret and not urlsplit(base).username:
            self._headers["authorization"] = f"Bearer {self._secret}"
        self._timeout_s = endpoint.timeout_s
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Created on first use: a session belongs to the running event loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=1000)  # the SDK's own connection limit
            self._session = aiohttp.ClientSession(connector=connector, headers=self._headers)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _post(self, body: dict[str, Any], ctx: CallContext) -> Any:
        timeout_s = ctx.timeout_s if ctx.timeout_s is not None else self._timeout_s
        # Per connect and per read, as the SDK's timeout is: a long stream that keeps talking is not cut.
        timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)
        return self._http().post(self.url, data=json.dumps(body), headers=ctx.trace_headers(), timeout=timeout)

    async def _raise_for(self, response: aiohttp.ClientResponse) -> None:
        if 200 <= response.status < 300:
            return
        body, message = sdk_error_parts(await response.text(errors="replace"), response.status)
        raise status_error(response.status, body, message, response.headers, self.base_url, self._secret)

    async def post(self, body: dict[str, Any], ctx: CallContext) -> object:
        try:
            async with self._post(body, ctx) as response:
                await self._raise_for(response)
                text = await response.text(errors="replace")
                if not response.content_type.endswith("json"):
                    return text  # as the SDK does; the adapter reports it as not a chat.completion
                return json.loads(text)
        except TimeoutError:
            raise too_slow(self.base_url) from None
        except aiohttp.ClientError:
            raise connection_failed(self.base_url, mid_stream=False) from None
        except ValueError:
            raise malformed(self.base_url, stream=False) from None

    async def stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncGenerator[object, None]:
        started = False
        try:
            async with self._post(body, ctx) as response:
                await self._raise_for(response)
                started = True
                async for data in _sse_data(response.content):
                    if data.startswith("[DONE]"):
                        return
                    frame = json.loads(data)
                    if isinstance(frame, dict) and frame.get("error"):
                        raise stream_error(frame["error"], self.base_url, self._secret)
                    yield frame
        except TimeoutError:
            raise too_slow(self.base_url) from None
        except aiohttp.ClientError:
            raise connection_failed(self.base_url, mid_stream=started) from None
        except ValueError:
            raise malformed(self.base_url, stream=True) from None


async def _sse_data(content: aiohttp.StreamReader) -> AsyncIterator[str]:
    """The `data` of each server-sent event, read as the SDK's `SSEDecoder` reads it (the SSE spec):
    `data:` lines joined, an event dispatched at a blank line when it has a name, data, a retry or
    the stream ever named an id, and an event the stream never ended with a blank line dropped.
    tests/test_openai_sse.py runs both readers on the same bytes.
    """
    lines: list[str] = []
    named = retry = seen_id = False
    async for raw in body_lines(content):
        line = raw.decode("utf-8", "replace").rstrip("\r")
        if not line:
            if lines or named or retry or seen_id:
                yield "\n".join(lines)
            lines, named, retry = [], False, False
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "data":
            lines.append(value)
        elif field == "event":
            named = bool(value)
        elif field == "id" and "\0" not in value:
            seen_id = bool(value)  # the last id named counts, as in the SDK
        elif field == "retry":
            retry = retry or value.strip().lstrip("+-").isdigit()


async def body_lines(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """The body's lines, however long: aiohttp's own line reader refuses a line over 128 KiB, and one
    tool call's arguments in a single delta can be longer (the SDK has no such limit)."""
    pending = b""
    async for piece in content.iter_any():
        pending += piece
        *whole, pending = pending.split(b"\n")
        for line in whole:
            yield line
    if pending:
        yield pending
