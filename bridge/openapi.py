"""The OpenAPI document both servers publish (`/openapi.json`, `/docs`): every route's request body,
answers, statuses and streams, as the routes really read and answer them.

    @router.post("/chat/completions", response_model=None,
                 responses=answers(ChatCompletion, stream=True) | errors(400, 401, 404, 413, 502))
    @reads_body(ChatRequest)
    async def chat(request: Request, body: ChatRequest) -> Response: ...

    app.openapi = document(app)

Bodies are read by our parser (`bridge.http.reads_body`), which FastAPI does not see as a request
body; `document` declares each one anyway, from the model the route's handler reads
(`body_model`), with FastAPI's own schema generation (one pass, so models shared by requests and
answers get consistent names). It also drops the 422 FastAPI adds to every route with parameters: OpenAI routes
answer a bad parameter with 400, and the routes that do answer 422 declare it with their own body.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel

from bridge.http import app_routes
from bridge.protocol import ErrorResponse

__all__ = ["SSE", "answers", "document", "errors"]

# What a streaming route sends instead of JSON when the request says `stream: true`.
SSE: dict[str, Any] = {
    "text/event-stream": {
        "schema": {"type": "string", "description": "Server-sent events, `data: <json>` frames (see docs/api.md)"}
    }
}

_REASONS = {
    400: "Bad request: malformed JSON, or a field that does not validate",
    401: "Missing or invalid API key",
    403: "The upstream refused the bridge's key",
    404: "Unknown model or resource",
    408: "The upstream did not answer in time",
    409: "The resource is not in a state that allows this",
    413: "The request body is larger than the server's limit (refused before it is read)",
    422: "The request does not validate",
    429: "Rate limited (upstream); Retry-After is passed on",
    502: "The upstream (or every panel member) failed",
    503: "Not ready: a bridge is restarting, or runs cannot be recorded",
    504: "The upstream timed out",
}


def answers(
    model: type[BaseModel] | None,
    *,
    status: int = 200,
    stream: bool = False,
    description: str = "The answer",
    media_type: str | None = None,
) -> dict[int | str, dict[str, Any]]:
    """A success answer: `model` as JSON, and an SSE stream as well when the route streams."""
    entry: dict[str, Any] = {"description": description}
    if model is not None:
        entry["model"] = model
    content: dict[str, Any] = {}
    if stream:
        content.update(SSE)
    if media_type is not None:
        content[media_type] = {"schema": {"type": "string", "format": "binary"}}
    if content:
        entry["content"] = content
    return {status: entry}


def errors(*statuses: int, model: type[BaseModel] = ErrorResponse) -> dict[int | str, dict[str, Any]]:
    """Error answers, each with the route's error body (OpenAI's unless the route has its own shape)."""
    return {status: {"model": model, "description": _REASONS.get(status, "Error")} for status in statuses}


def document(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi`: FastAPI's document with the bodies our parser reads declared, made once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _build(app)
        return app.openapi_schema

    return openapi


def _build(app: FastAPI) -> dict[str, Any]:
    # Each body model goes through a stand-in route that takes it as FastAPI's body, in the same
    # generation pass as the real routes; its requestBody then moves to the real route.
    stand_ins: list[APIRoute] = []
    moves: list[tuple[str, set[str], str]] = []
    for route in app_routes(app):
        model = getattr(getattr(route, "endpoint", None), "body_model", None)
        if model is None or not getattr(route, "include_in_schema", True):
            continue
        path = f"/__body__/{len(stand_ins)}"
        stand_ins.append(APIRoute(path, _takes(model), methods=["POST"]))
        moves.append((route.path_format, set(route.methods or ()), path))
    schema = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=[*app.routes, *stand_ins],
    )
    paths = schema["paths"]
    for path, methods, stand_in in moves:
        body = paths.pop(stand_in)["post"]["requestBody"]
        for method in methods:
            paths[path][method.lower()]["requestBody"] = body
    for operations in paths.values():
        for operation in operations.values():
            declared = operation.get("responses", {}).get("422", {})
            if "HTTPValidationError" in str(declared.get("content", "")):
                del operation["responses"]["422"]
    if "HTTPValidationError" not in str(paths):
        for name in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(name, None)
    return schema


def _takes(model: type[BaseModel]) -> Callable[..., None]:
    """An endpoint whose one parameter is a `model` body: what FastAPI documents as that body."""

    def endpoint(body: Any) -> None:
        raise NotImplementedError  # never routed: it only shapes the document

    parameter = inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=model)
    endpoint.__signature__ = inspect.Signature([parameter])  # type: ignore[attr-defined]
    return endpoint
