"""How the openai adapter's requests travel, and what every way of sending them agrees on.

    transport: Transport = SdkTransport(endpoint)        # a bridge: the official SDK
    transport: Transport = AiohttpTransport(endpoint)    # the router in-process: aiohttp
    data = await transport.post(body, ctx)               # the decoded JSON answer
    async for frame in transport.stream(body, ctx): ...  # each decoded SSE `data:` frame

A transport moves the request body out and decoded JSON back, and raises every failure as the
`APIError` the client should see: the upstream's status and error body (`status_error`), a timeout,
an unreachable upstream, a connection broken mid-stream, an error frame inside a stream. What the
answer means (finish reasons, tool-call deltas, usage) is the adapter's, for both.

Two transports because the two processes differ: a bridge fronts one model and speaks to it through
the SDK its users know; the router calling endpoints in-process makes several calls per fused
request, already runs aiohttp for its bridges, and spends far less CPU per call on it than on the
SDK's httpx stack (docs/benchmarks.md). tests/test_paths_agree.py holds them to the same results.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from bridge.adapters.base import CallContext
from bridge.errors import APIError, from_openai_status, redact, timed_out, upstream_failure

__all__ = [
    "Transport",
    "connection_failed",
    "display_url",
    "malformed",
    "sdk_error_parts",
    "status_error",
    "stream_error",
    "too_slow",
    "upstream_base_url",
]

OPENAI_DEFAULT_BASE_URL = "https://api.openai.com/v1"


class Transport(Protocol):
    base_url: str  # as it may appear in messages: without credentials

    async def post(self, body: dict[str, Any], ctx: CallContext) -> object: ...

    def stream(self, body: dict[str, Any], ctx: CallContext) -> AsyncGenerator[object, None]: ...

    async def aclose(self) -> None: ...


def upstream_base_url(configured: str | None) -> str:
    """Where requests go, as the SDK decides it: the configured URL, else OPENAI_BASE_URL, else OpenAI's."""
    return configured or os.environ.get("OPENAI_BASE_URL") or OPENAI_DEFAULT_BASE_URL


def display_url(url: str) -> str:
    """The URL as it may appear in messages: without credentials someone put in it."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url.rstrip("/")
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])).rstrip("/")


def sdk_error_parts(text: str, status: int) -> tuple[object, str]:
    """An error response's body as the SDK reads it: the `error` object (or the whole JSON, or the
    text) and the exception message it would carry, so both transports report the same."""
    text = text.strip()
    message = f"Error code: {status}"
    try:
        body: object = json.loads(text)
    except ValueError:
        return text, message
    error = body.get("error", body) if isinstance(body, dict) else body
    detail = error.get("message") if isinstance(error, dict) else None
    if isinstance(detail, str) and detail:
        message += f" - {detail}"
    return error, message


def too_slow(base_url: str) -> APIError:
    return timed_out(f"upstream at {base_url} did not answer in time")


def connection_failed(base_url: str, *, mid_stream: bool) -> APIError:
    if mid_stream:
        return upstream_failure(f"connection to upstream at {base_url} broke in the middle of the stream")
    return upstream_failure(f"cannot reach upstream at {base_url}")


def malformed(base_url: str, *, stream: bool) -> APIError:
    if stream:
        return upstream_failure(f"upstream at {base_url} sent a malformed stream chunk")
    return upstream_failure(f"upstream at {base_url} answered with malformed JSON")


def stream_error(frame_error: object, base_url: str, secret: str | None) -> APIError:
    """An error frame inside a stream (`{"error": {...}}` after some chunks), as the SDK words it."""
    message = frame_error.get("message") if isinstance(frame_error, dict) else None
    if not message or not isinstance(message, str):
        message = "An error occurred during streaming"
    return upstream_failure(redact(f"upstream at {base_url} failed in the middle of the stream: {message}", secret))


def status_error(
    status: int, body: object, message: str, headers: Mapping[str, str], base_url: str, secret: str | None
) -> APIError:
    """An upstream's error response as the status and OpenAI error body the client should see.

    `body` is the upstream's `error` object (Ollama's is a bare string), `message` the fallback when
    it has none; `secret` is scrubbed from what is passed on.
    """
    details = body if isinstance(body, dict) else {"message": body} if isinstance(body, str) and body else {}
    clean = {**details, "message": redact(str(details.get("message") or message or f"HTTP {status}"), secret)}
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
