"""`POST /v1/responses`: the OpenAI Responses API in front of the fusion path.

Codex CLI, the OpenAI Agents SDK and `openai`'s `responses.create` / `responses.stream` talk to
this route. The request is translated (`responses_translate`) into the engine's request, run on
the one fusion path (`launch.FusionPath`), and answered as a `response` object or as the
Responses event stream. `previous_response_id` continues a stored response's conversation; a
response made with `store: false` is recorded as a run like any other but cannot be continued.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from bridge.errors import bad_request
from bridge.http import reads_body, validation_error
from bridge.openapi import answers, errors
from bridge.protocol import ChatMessage
from server.doors.launch import FusionPath, stream_response
from server.doors.notes import DoorNotes
from server.doors.responses_translate import (
    ResponseStream,
    ToolMap,
    asks_for_reasoning,
    finished,
    output_items,
    response_id_for,
    response_json,
    response_skeleton,
    run_id_for,
    to_chat_request,
)
from server.protocol.responses import ResponseObject, ResponsesRequest
from server.store import RunStoreAPI, is_valid_run_id

__all__ = ["responses_router"]

DOOR = "responses"


async def previous_conversation(store: RunStoreAPI, response_id: str) -> list[ChatMessage]:
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


def responses_router(fusion: FusionPath) -> APIRouter:
    router = APIRouter()

    @router.post(
        "/responses",
        response_model=None,
        responses=answers(ResponseObject, stream=True) | errors(400, 401, 404, 409, 413, 502, 503, 504),
    )
    @reads_body(ResponsesRequest)
    async def create_response(request: Request, body: ResponsesRequest) -> Response:
        options = fusion.options(body.model, body.fusion, show_reasoning=asks_for_reasoning(body))
        history = []
        if body.previous_response_id:
            history = await previous_conversation(fusion.runs.store, body.previous_response_id)
        notes = DoorNotes(name=DOOR)
        try:
            tools = ToolMap.of(body.tools, notes)
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
            return JSONResponse(response_json(done, notes.metadata(result)), headers=run.headers)

        return stream_response(await run.events(), ResponseStream(response, tools, notes), run.headers)

    return router
