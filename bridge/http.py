"""HTTP plumbing both servers share: JSON body parsing, OpenAI error responses, SSE framing,
request logging and body limits, and racing a handler against a client disconnect.

Nothing here knows about models or prompts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.errors import APIError, bad_request, error_body, key_path
from bridge.protocol import InvalidParam
from bridge.tracing import incoming_traceparent

if TYPE_CHECKING:
    from bridge.metrics import RequestMetrics

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "AccessLogMiddleware",
    "ClientDisconnected",
    "error_response",
    "install_error_handlers",
    "parse_body",
    "race_disconnect",
    "sse_comment",
    "sse_data",
    "sse_stream",
    "validation_error",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
access_log = logging.getLogger("fusionkit.access")


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers())


def validation_error(exc: ValidationError | RequestValidationError) -> APIError:
    """The first problem of a pydantic error as a 400 that names the field."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    loc = tuple(p for p in first.get("loc", ()) if p not in ("body", "function-after[_check_role_fields()]"))
    ctx = first.get("ctx")
    cause = ctx.get("error") if isinstance(ctx, dict) else None
    param = key_path(loc) or (cause.param if isinstance(cause, InvalidParam) else None)
    msg = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
    return bad_request(f"{param + ': ' if param else ''}{msg}{more}", param=param, code="invalid_request")


async def parse_body(request: Request, model: type[M]) -> M:
    """Read a JSON body into `model`; malformed JSON and schema violations become 400s."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request(f"request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        # Python's parser gives up near 1,000 levels of nesting: a body no API here needs.
        raise bad_request("request body is nested too deeply", code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None


def install_error_handlers(app: FastAPI) -> None:
    """Every error leaves in the OpenAI shape; an unexpected exception is a logged 500 without details."""

    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(ClientDisconnected)
    async def _gone(_: Request, exc: ClientDisconnected) -> Response:
        return Response(status_code=499)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found_error", 405: "invalid_request_error"}.get(exc.status_code, "invalid_request_error")
        return JSONResponse(error_body(str(exc.detail), kind, code=str(exc.status_code)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logging.getLogger("fusionkit").exception("unhandled error on %s %s", request.method, request.url.path)
        body = error_body("internal error; see the server log", "server_error", code="internal_error")
        return JSONResponse(body, status_code=500)


class ClientDisconnected(Exception):
    """The client went away before its answer was ready; the work for it was cancelled.

    Not an error of the server: the error handlers answer it with a 499 that nobody reads, and the
    access log's one line (status 499) is all that is logged.
    """


async def race_disconnect(request: Request, work: Awaitable[T], poll_s: float = 0.1) -> T:
    """Run `work`, cancelling it if the client goes away first (so upstream calls stop too)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise ClientDisconnected
    finally:
        if not task.done():
            task.cancel()


def sse_data(payload: dict[str, Any] | str) -> bytes:
    text = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def sse_comment(text: str = "keep-alive") -> bytes:
    return f": {text}\n\n".encode()


SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def sse_stream(frames: AsyncIterator[bytes], on_error: Callable[[BaseException], bytes]) -> AsyncIterator[bytes]:
    """Forward frames; an error after the stream began becomes an error frame, never a silent cut."""
    try:
        async for frame in frames:
            yield frame
    except APIError as exc:
        yield on_error(exc)
    except Exception as exc:
        logging.getLogger("fusionkit").exception("stream failed")
        yield on_error(exc)


class AccessLogMiddleware:
    """One log line per request (and, with `metrics`, its count and latency by route template, model and
    status); refuses bodies over the size limit with 413 before reading them. A client's W3C `traceparent`
    is made the request's `incoming_traceparent`, so the run it starts joins the client's trace."""

    def __init__(
        self, app: ASGIApp, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, metrics: RequestMetrics | None = None
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        context: dict[str, str] = {}
        scope.setdefault("state", {})["log_context"] = context

        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await _too_large(send, self.max_body_bytes)
            self._log(scope, 413, started, headers, context)
            return

        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise _BodyTooLarge()
            return message

        async def logging_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        parent = incoming_traceparent.set(headers.get("traceparent"))
        try:
            await self.app(scope, limited_receive, logging_send)
        except _BodyTooLarge:
            if status == 0:
                await _too_large(send, self.max_body_bytes)
                status = 413
        finally:
            incoming_traceparent.reset(parent)
            self._log(scope, status or 499, started, headers, context)

    def _log(self, scope: Scope, status: int, started: float, headers: dict[str, str], context: dict[str, str]) -> None:
        elapsed = time.perf_counter() - started
        if self.metrics is not None:
            # The matched route's template, never the raw path: a client cannot mint new series.
            self.metrics.observe(route_template(scope), context.get("model"), status, elapsed)
        fields: dict[str, Any] = {
            "method": scope.get("method"),
            "path": scope.get("path"),
            "status": status,
            "latency_ms": round(elapsed * 1000, 1),
        }
        if "x-fusion-trace-id" in headers:
            fields["trace_id"] = headers["x-fusion-trace-id"]
        if "x-fusion-candidate-id" in headers:
            fields["candidate_id"] = headers["x-fusion-candidate-id"]
        fields.update(context)
        # The fields ride on the record too: the JSON log format (fusionkit_cli.logs) makes them keys.
        extra = " ".join(f"{k}={v}" for k, v in fields.items() if k not in ("method", "path", "status", "latency_ms"))
        access_log.info(
            "%s %s %s %.1fms %s",
            fields["method"],
            fields["path"],
            status,
            fields["latency_ms"],
            extra,
            extra={"fields": fields},
        )


_PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")


def route_template(scope: Scope) -> str:
    """The template of the route that answered (`/v1/fusion/runs/{run_id}`), "unmatched" when none did.

    A route of an included router may know its path without the prefixes it was included under: those
    are what precedes the route's own path, filled in with this request's parameters, in the path.
    """
    route = scope.get("route")
    template = getattr(route, "path", None)
    if not isinstance(template, str) or not template:
        return "unmatched"
    params = scope.get("path_params") or {}
    filled = _PARAM.sub(lambda m: str(params.get(m.group(1), m.group(0))), template) if params else template
    path = str(scope.get("path", ""))
    if path.endswith(filled) and len(path) > len(filled):
        return path[: -len(filled)] + template
    return template


class _BodyTooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        error_body(
            f"request body exceeds the limit of {limit} bytes", "invalid_request_error", code="request_too_large"
        )
    ).encode()
    await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def log_context(request: Request) -> dict[str, str]:
    """Fields a handler adds to its request's access-log line (run id, model)."""
    ctx: dict[str, str] = request.scope.setdefault("state", {}).setdefault("log_context", {})
    return ctx


AsyncHandler = Callable[..., Awaitable[Response]]
