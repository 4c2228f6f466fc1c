"""`POST /v1/messages` and `POST /v1/messages/count_tokens`: the Anthropic Messages API in front
of the fusion path.

Claude Code (`ANTHROPIC_BASE_URL`) and the `anthropic` SDK talk to these routes; the query
string Claude Code adds (`?beta=true`) and its beta headers change nothing. Every error on them,
from a body over the limit (refused by the access-log middleware, which the app tells this shape)
and auth to a run that fails mid-stream, is in Anthropic's shape
(`{"type": "error", "error": {"type", "message"}}`), so the client raises its own exception.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from pydantic import ValidationError

from bridge.errors import APIError
from bridge.http import reads_body, validation_error
from bridge.openapi import answers, errors
from server.doors.launch import FusionPath, stream_response
from server.doors.messages_translate import (
    MessageStream,
    asks_for_reasoning,
    error_body,
    estimate_tokens,
    message_object,
    to_chat_request,
)
from server.doors.notes import DoorNotes
from server.protocol.messages import AnthropicError, CountTokensRequest, MessageObject, MessagesRequest, TokenCount

__all__ = ["AnthropicErrorRoute", "messages_router"]

DOOR = "messages"


class AnthropicErrorRoute(APIRoute):
    """A route whose errors (its auth dependency's too) leave in Anthropic's error shape."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _error_response(validation_error(exc))
            except APIError as error:
                return _error_response(error)

        return handle


def _error_response(error: APIError) -> JSONResponse:
    return JSONResponse(error_body(error), status_code=error.status, headers=error.headers())


def messages_router(fusion: FusionPath) -> APIRouter:
    router = APIRouter(route_class=AnthropicErrorRoute)

    @router.post(
        "/messages",
        response_model=None,
        responses=answers(MessageObject, stream=True)
        | errors(400, 401, 404, 409, 413, 502, 503, 504, model=AnthropicError),
    )
    @reads_body(MessagesRequest)
    async def create_message(request: Request, body: MessagesRequest) -> Response:
        options = fusion.options(body.model, body.fusion, show_reasoning=asks_for_reasoning(body))
        notes = DoorNotes(name=DOOR)
        try:
            chat = to_chat_request(body, notes)
        except ValidationError as exc:
            raise validation_error(exc) from None
        record = {"body": body.model_dump(mode="json", exclude_unset=True)}
        run = await fusion.start(request, door=DOOR, model=body.model, chat=chat, options=options, record=record)
        message_id = "msg_" + run.recorder.run_id.removeprefix("run_")
        if not body.stream:
            result = await run.result(request)
            message = message_object(result, model=body.model, message_id=message_id)
            return JSONResponse({**message.model_dump(), "fusionkit": notes.metadata(result)}, headers=run.headers)

        return stream_response(await run.events(), MessageStream(message_id, body.model, notes), run.headers)

    @router.post("/messages/count_tokens", responses=errors(400, 401, 404, 413, model=AnthropicError))
    @reads_body(CountTokensRequest)
    async def count_tokens(body: CountTokensRequest) -> TokenCount:
        fusion.options(body.model, None)  # an unknown model is a 404 here too
        try:
            return TokenCount(input_tokens=estimate_tokens(body))
        except ValidationError as exc:
            raise validation_error(exc) from None

    return router
