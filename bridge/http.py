"""HTTP plumbing both servers share: JSON body parsing, OpenAI error responses, SSE framing,
request logging and body limits, and racing a handler against a client disconnect.

    @reads_body(ChatRequest)
    async def chat(request: Request, body: ChatRequest): ...   # parsed by `parse_body`

Nothing here knows about models or prompts.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import FastAPI, Request, routing
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bridge.errors import APIError, bad_request, describe_validation_error, error_body
from bridge.tracing import incoming_traceparent

if TYPE_CHECKING:
    from bridge.metrics import RequestMetrics

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "AccessLogMiddleware",
    "ClientDisconnected",
    "InvalidJSON",
    "allowed_methods",
    "app_routes",
    "decode_json",
    "error_response",
    "install_error_handlers",
    "parse_body",
    "race_disconnect",
    "reads_body",
    "sse_comment",
    "sse_data",
    "sse_event",
    "sse_stream",
    "validation_error",
]

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024
access_log = logging.getLogger("fusionkit.access")


def error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers())


def validation_error(exc: ValidationError | RequestValidationError, data: Any = None) -> APIError:
    """A pydantic error as a 400 that names the field (`data`, the validated input, locates it precisely)."""
    errors = [{**e, "loc": tuple(p for p in e.get("loc", ()) if p != "body")} for e in exc.errors()]
    described = describe_validation_error(errors, data)
    return bad_request(described.summary(), param=described.first.path or None, code="invalid_request")


class InvalidJSON(ValueError):
    """A request body that is not JSON, or is nested deeper than the parser goes (`too_deep`)."""

    def __init__(self, reason: str, *, too_deep: bool = False) -> None:
        super().__init__(reason)
        self.too_deep = too_deep


def decode_json(raw: bytes) -> Any:
    """A request body as JSON, whatever its Content-Type says (clients such as `curl -d` send JSON as a form)."""
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidJSON(str(exc)) from None
    except RecursionError:
        # Python's parser gives up near 1,000 levels of nesting: a body no API here needs.
        raise InvalidJSON("nested too deeply", too_deep=True) from None


async def parse_body(request: Request, model: type[M]) -> M:
    """Read a JSON body into `model`; malformed JSON and schema violations become 400s."""
    try:
        data = decode_json(await request.body())
    except InvalidJSON as exc:
        message = "request body is nested too deeply" if exc.too_deep else f"request body is not valid JSON: {exc}"
        raise bad_request(message, code="invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("request body must be a JSON object", code="invalid_json")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, data) from None


Handler = Callable[..., Awaitable[Any]]


def reads_body(
    model: type[M], parse: Callable[[Request, type[M]], Awaitable[M]] = parse_body
) -> Callable[[Handler], Handler]:
    """A route handler's decorator: its `body` parameter gets the request's JSON body as `model`, read by `parse`.

        @app.post("/v1/chat/completions", response_model=None)
        @reads_body(ChatRequest)
        async def chat(request: Request, body: ChatRequest) -> Response: ...

    The body is read by our parser, not FastAPI's, so that it is read only after the route's
    dependencies (auth first: a client without a key learns nothing about the body), whatever the
    Content-Type, and every failure leaves in the route's own error shape. It is read as the handler
    is called, not as a FastAPI dependency, which costs ~9 µs more per request (docs/benchmarks.md).
    FastAPI is shown the handler without `body` (and with `request`, which reading needs); the
    OpenAPI document (`bridge.openapi`) declares `model` as the route's request body (`body_model`).
    """

    def decorate(handler: Handler) -> Handler:
        signature = inspect.signature(handler, eval_str=True)
        passes_request = "request" in signature.parameters
        shown = [parameter for name, parameter in signature.parameters.items() if name != "body"]
        if not passes_request:
            shown.append(inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request))

        @functools.wraps(handler)
        async def endpoint(**values: Any) -> Any:
            request = values["request"] if passes_request else values.pop("request")
            return await handler(**values, body=await parse(request, model))

        endpoint.__signature__ = signature.replace(parameters=shown)  # type: ignore[attr-defined]
        endpoint.body_model = model  # type: ignore[attr-defined]
        return endpoint

    return decorate


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
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found_error", 405: "invalid_request_error"}.get(exc.status_code, "invalid_request_error")
        body = error_body(str(exc.detail), kind, code=str(exc.status_code))
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route on the path; a path can have several.
            headers["Allow"] = ", ".join(sorted(allowed_methods(request.app, request.url.path)))
        return JSONResponse(body, status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logging.getLogger("fusionkit").exception("unhandled error on %s %s", request.method, request.url.path)
        body = error_body("internal error; see the server log", "server_error", code="internal_error")
        return JSONResponse(body, status_code=500)


def app_routes(app: FastAPI) -> list[Any]:
    """Every route of `app` with its full path, routers included (`path_regex`, `methods`, `dependant`)."""
    contexts = getattr(routing, "iter_route_contexts", None)  # FastAPI >= 0.130 keeps included routes apart
    return list(contexts(app.routes)) if contexts is not None else list(app.routes)


def allowed_methods(app: FastAPI, path: str) -> set[str]:
    """The methods some route of `app` answers at `path`: what a 405's `Allow` lists."""
    methods: set[str] = set()
    for route in app_routes(app):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods |= set(getattr(route, "methods", None) or ())
    return methods


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


def sse_event(type: str, data: dict[str, Any]) -> bytes:
    """One SSE frame with an `event:` line naming its type, as both Anthropic and OpenAI Responses send."""
    return f"event: {type}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


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
    status); refuses bodies over the size limit with 413 before reading them, in OpenAI's error shape or,
    under a path prefix of `error_bodies`, in the shape it gives. A client's W3C `traceparent`
    is made the request's `incoming_traceparent`, so the run it starts joins the client's trace."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        metrics: RequestMetrics | None = None,
        error_bodies: dict[str, Callable[[APIError], dict[str, Any]]] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.error_bodies = error_bodies or {}

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
            await self._too_large(scope, send)
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
                await self._too_large(scope, send)
                status = 413
        finally:
            incoming_traceparent.reset(parent)
            self._log(scope, status or 499, started, headers, context)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        error = APIError(
            413,
            f"request body exceeds the limit of {self.max_body_bytes} bytes",
            type="invalid_request_error",
            code="request_too_large",
        )
        path = str(scope.get("path", ""))
        shape = next((body for prefix, body in self.error_bodies.items() if path.startswith(prefix)), None)
        data = shape(error) if shape is not None else error.body()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": json.dumps(data).encode()})

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
        # The fields ride on the record too: the JSON log format (bridge/logs.py) makes them keys.
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


def log_context(request: Request) -> dict[str, str]:
    """Fields a handler adds to its request's access-log line (run id, model)."""
    ctx: dict[str, str] = request.scope.setdefault("state", {}).setdefault("log_context", {})
    return ctx

