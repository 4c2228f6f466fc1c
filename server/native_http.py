"""How the native API's routes (`/v1/fusion/*`) read a body and answer an error, as the seed does.

    router = APIRouter(prefix="/fusion/runs", route_class=NativeRoute)   # every error in the seed's shape
    @reads_body(FusionRunRequest, parse=parse_native)
    async def create_run(request: Request, body: FusionRunRequest): ...

A request that does not validate is a 422 with FastAPI's `detail` list (what the seed answers);
every other error carries the OpenAI error fields and the seed's `NativeRunError` fields together.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.responses import Response

from bridge.errors import APIError, describe_validation_error
from bridge.http import InvalidJSON, decode_json
from server.protocol.native import NativeRunError, run_error

__all__ = ["FusionError", "NativeRoute", "native_error", "parse_native", "validation_failed"]


class FusionError(APIError):
    """An error of the native routes: the seed's `NativeRunError` fields, the OpenAI ones beside them.

    A 422 also carries FastAPI's `detail` list, which is what the seed answers for a request that
    does not validate.
    """

    def __init__(
        self, status: int, native: NativeRunError, *, param: str | None = None, detail: list[Any] | None = None
    ) -> None:
        kind = {404: "not_found_error", 429: "rate_limit_error"}.get(status, "invalid_request_error")
        if status >= 500:
            kind = "server_error"
        super().__init__(
            status, native.message or native.terminal_reason, type=kind, code=native.error_code, param=param
        )
        self.native = native
        self.detail = detail

    def body(self) -> dict[str, Any]:
        body = super().body()  # with the run it ended (`run_id`) and why (`failed_members`), as on every route
        body["error"].update(self.native.wire())
        if self.detail is not None:
            body["detail"] = self.detail
        return body


def native_error(error: APIError) -> FusionError:
    """Any APIError a native route raises, in the native routes' shape (same status, run and details)."""
    if isinstance(error, FusionError):
        return error
    native = run_error(error.status, error.code, error.message)
    converted = FusionError(error.status, native, param=error.param)
    converted.retry_after, converted.retryable = error.retry_after, error.retryable
    converted.run_id, converted.details = error.run_id, error.details
    return converted


def validation_failed(errors: list[Any], data: Any = None, where: str = "body") -> FusionError:
    """A request that does not validate: 422 with FastAPI's `detail` list, as the seed answers it.

    `data`, the body that was validated, locates the problem for the message and `param`.
    """
    located = [(_located(error.get("loc", ()), where), error) for error in errors]
    detail = [{**_echoable_fields(error), "loc": list(loc)} for loc, error in located]
    body_relative = [{**error, "loc": loc[1:]} for loc, error in located]
    described = describe_validation_error(body_relative, data)
    native = NativeRunError(
        error_kind="validation_error",
        error_code="invalid_request",
        retryable=False,
        owner="fusionkit",
        terminal_reason="invalid_request",
        message=described.summary(),
    )
    return FusionError(422, native, param=described.first.path or None, detail=detail)


def _located(loc: Any, where: str) -> tuple[Any, ...]:
    """A location as FastAPI writes it: it opens with where the value was (body, query, path, header)."""
    loc = tuple(loc)
    return loc if loc and loc[0] in ("body", "query", "path", "header") else (where, *loc)


def _echoable_fields(error: Any) -> dict[str, Any]:
    item = {k: v for k, v in error.items() if k in ("type", "msg", "input", "ctx")}
    if "input" in item:
        item["input"] = _echoable(item["input"])
    if "ctx" in item:
        item["ctx"] = {k: v if isinstance(v, str | int | float | bool) else str(v) for k, v in item["ctx"].items()}
    return item


_ECHO_LIMIT = 2_000


def _echoable(value: Any) -> Any:
    """A validation error's `input` as it can be echoed: JSON-safe (no NaN), and a long one cut, as text."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return repr(value)[:_ECHO_LIMIT]
    return value if len(text) <= _ECHO_LIMIT else text[:_ECHO_LIMIT] + "..."


M = TypeVar("M", bound=BaseModel)


async def parse_native(request: Request, model: type[M]) -> M:
    """A JSON body as `model`; malformed JSON or a schema violation is a 422 in the seed's shape."""
    try:
        data = decode_json(await request.body())
    except InvalidJSON as exc:
        if exc.too_deep:
            problem: dict[str, Any] = {"loc": ["body"], "msg": "JSON decode error: nested too deeply"}
        else:
            problem = {"loc": ["body", 0], "msg": "JSON decode error", "ctx": {"error": str(exc)}}
        raise validation_failed([{"type": "json_invalid", **problem, "input": {}}]) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_failed(exc.errors(include_url=False), data) from None


class NativeRoute(APIRoute):
    """A route whose every error leaves in the native shape: validation as a 422 with `detail`, the rest
    as `FusionError` (the OpenAI error fields and the seed's `NativeRunError` fields together)."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response: Response = await handler(request)
            except RequestValidationError as exc:
                raise validation_failed(list(exc.errors())) from None
            except APIError as exc:
                raise native_error(exc) from None
            return response

        return route
