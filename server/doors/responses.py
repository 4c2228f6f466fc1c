"""`POST /v1/responses`: the OpenAI Responses API in front of the fusion path (SPEC §14).

Codex CLI, the OpenAI Agents SDK and `openai`'s `responses.create` / `responses.stream` talk to
this route. The request is translated (`responses_translate`) into the engine's request, run on
the one fusion path (`launch.FusionPath`), and answered as a `response` object or as the
Responses event stream. `previous_response_id` continues a stored response's conversation; a
response made with `store: false` is recorded as a run like any other but cannot be continued.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import ValidationError

from bridge.errors import APIError, bad_request
from bridge.http import SSE_HEADERS, parse_body, sse_comment, validation_error
from bridge.protocol import ChatMessage
from server.doors.launch import FusionPath, KeepAlive
from server.doors.responses_protocol import ResponsesRequest
from server.doors.responses_translate import (
    ResponseStream,
    ToolMap,
    finished,
    output_items,
    response_id_for,
    response_json,
    response_skeleton,
    run_id_for,
    to_chat_request,
)
from server.doors.wire import DoorNotes
from server.engine import FusionResult, Phase, TextDelta
from server.store import RunStore, is_valid_run_id

__all__ = ["responses_router"]

DOOR = "responses"


async def previous_conversation(store: RunStore, response_id: str) -> list[ChatMessage]:
    """The whole conversation of a stored, completed response: its input and its output."""
    run_id = run_id_for(response_id)
    record = await store.get_run(run_id) if is_valid_run_id(run_id) else None
    request = record.request if record is not None else {}
    conversation = request.get("conversation") if isinstance(request, dict) else None
    final = (record.summary or {}).get("final_output") if record is not None else None
    if record is None or record.state != "completed" or conversation is None or final is None:
        raise bad_request(
            f"previous response '{response_id[:80]}' not found: it must be a completed response made here "
            "without store: false",
            param="previous_response_id",
            code="previous_response_not_found",
        )
    return [ChatMessage.model_validate(m) for m in [*conversation, final]]


def _fusionkit(result: FusionResult, notes: DoorNotes) -> dict[str, Any]:
    return {**result.metadata.model_dump(), "door": notes.model_dump()}


def responses_router(fusion: FusionPath) -> APIRouter:
    router = APIRouter()

    @router.post("/responses", response_model=None)
    async def create_response(request: Request) -> Response:
        body = await parse_body(request, ResponsesRequest)
        options = fusion.options(body.model, body.fusion)
        history = []
        if body.previous_response_id:
            history = await previous_conversation(fusion.runs.store, body.previous_response_id)
        notes = DoorNotes(name=DOOR)
        tools = ToolMap.of(body.tools, notes)
        try:
            chat, conversation = to_chat_request(body, history, tools, notes)
        except ValidationError as exc:
            raise validation_error(exc) from None
        record: dict[str, Any] = {"body": body.model_dump(mode="json", exclude_unset=True, by_alias=True)}
        if body.store is not False:
            record["conversation"] = [m.model_dump(exclude_none=True) for m in conversation]
        run = await fusion.start(request, door=DOOR, model=body.model, chat=chat, options=options, record=record)
        response = response_skeleton(body, response_id_for(run.recorder.run_id))
        if not body.stream:
            result = await run.result(request)
            done = finished(response, result, output_items(result.message, tools))
            return JSONResponse(response_json(done, _fusionkit(result, notes)), headers=run.headers)

        events = await run.events()
        stream = ResponseStream(response, tools)

        async def frames() -> AsyncIterator[bytes]:
            async with events:
                for frame in stream.opening():
                    yield frame
                try:
                    async for item in events:
                        if isinstance(item, KeepAlive):
                            yield sse_comment()
                        elif isinstance(item, Phase):
                            yield sse_comment(item.name)
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

    return router
