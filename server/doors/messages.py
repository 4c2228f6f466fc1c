"""`POST /v1/messages` and `POST /v1/messages/count_tokens`: the Anthropic Messages API in front
of the fusion path (SPEC §14).

Claude Code (`ANTHROPIC_BASE_URL`) and the `anthropic` SDK talk to these routes; the query
string Claude Code adds (`?beta=true`) and its beta headers change nothing. Every error on them,
from auth to a run that fails mid-stream, is in Anthropic's shape
(`{"type": "error", "error": {"type", "message"}}`), so the client raises its own exception.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError

from bridge.errors import APIError
from bridge.http import SSE_HEADERS, parse_body, validation_error
from server.doors.launch import FusionPath, KeepAlive
from server.doors.messages_protocol import CountTokensRequest, MessagesRequest
from server.doors.messages_translate import MessageStream, error_body, estimate_tokens, message_object, to_chat_request
from server.doors.wire import DoorNotes
from server.engine import FusionResult, Phase, TextDelta

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


def _fusionkit(result: FusionResult, notes: DoorNotes) -> dict[str, Any]:
    return {**result.metadata.model_dump(), "door": notes.model_dump()}


def messages_router(fusion: FusionPath) -> APIRouter:
    router = APIRouter(route_class=AnthropicErrorRoute)

    @router.post("/messages", response_model=None)
    async def create_message(request: Request) -> Response:
        body = await parse_body(request, MessagesRequest)
        options = fusion.options(body.model, body.fusion)
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
            return JSONResponse({**message.model_dump(), "fusionkit": _fusionkit(result, notes)}, headers=run.headers)

        events = await run.events()
        stream = MessageStream(message_id, body.model)

        async def frames() -> AsyncIterator[bytes]:
            async with events:
                for frame in stream.opening():
                    yield frame
                try:
                    async for item in events:
                        if isinstance(item, KeepAlive | Phase):
                            yield stream.ping()
                        elif isinstance(item, TextDelta):
                            for frame in stream.delta(item.text):
                                yield frame
                        else:
                            for frame in stream.finish(item, _fusionkit(item, notes)):
                                yield frame
                except APIError as error:
                    for frame in stream.failed(error):
                        yield frame

        return StreamingResponse(frames(), media_type="text/event-stream", headers={**SSE_HEADERS, **run.headers})

    @router.post("/messages/count_tokens")
    async def count_tokens(request: Request) -> dict[str, int]:
        body = await parse_body(request, CountTokensRequest)
        fusion.options(body.model, None)  # an unknown model is a 404 here too
        try:
            return {"input_tokens": estimate_tokens(body)}
        except ValidationError as exc:
            raise validation_error(exc) from None

    return router
