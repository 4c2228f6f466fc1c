"""A stand-in Anthropic Messages API (`POST /v1/messages`), JSON and SSE, as the real one speaks it.

The answer is `echo: <text of the last user turn>` (or `state.answer`); with tools (and a
tool_choice other than none, and a last turn that is not a tool result) it calls the first tool
with `{"q": <that text>}`. `state.finish` overrides the stop_reason. Scripted errors are
answered with Anthropic's error body (`{"type": "error", "error": {"type", "message"}}`).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.standins.recorder import StandinState

__all__ = ["anthropic_error", "create_anthropic_standin"]

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


def _last_user_text(body: dict[str, Any]) -> tuple[str, bool]:
    """(text of the last user turn, whether it carries a tool result)."""
    turn = body["messages"][-1]
    content = turn["content"]
    if isinstance(content, str):
        return content, False
    text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
    return text, any(b.get("type") == "tool_result" for b in content)


def _answer(body: dict[str, Any], state: StandinState) -> tuple[list[dict[str, Any]], str]:
    text, after_tool = _last_user_text(body)
    tools = body.get("tools") or []
    choice = (body.get("tool_choice") or {}).get("type")
    if tools and choice != "none" and not after_tool:
        call = {"type": "tool_use", "id": "toolu_01", "name": tools[0]["name"], "input": {"q": text}}
        return [call], state.finish or "tool_use"
    answer = state.answer if state.answer is not None else f"echo: {text}"
    return [{"type": "text", "text": answer}], state.finish or "end_turn"


def _event(kind: str, data: dict[str, Any]) -> bytes:
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


def create_anthropic_standin(state: StandinState) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/messages", response_model=None)
    async def messages(request: Request) -> Response:
        body = await request.json()
        async with state.handling(request.url.path, body, dict(request.headers)) as error:
            if error is not None:
                return JSONResponse(error.body, status_code=error.status, headers=error.headers)
            if "max_tokens" not in body:
                return JSONResponse(anthropic_error(400, "max_tokens: Field required"), status_code=400)
            blocks, stop = _answer(body, state)
        usage = {"input_tokens": 11, "output_tokens": 7}
        if not body.get("stream"):
            return JSONResponse(
                {
                    "id": "msg_01",
                    "type": "message",
                    "role": "assistant",
                    "model": body["model"],
                    "content": blocks,
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": usage,
                }
            )
        return StreamingResponse(_stream(body, blocks, stop), media_type="text/event-stream")

    return app


async def _stream(body: dict[str, Any], blocks: list[dict[str, Any]], stop: str) -> AsyncIterator[bytes]:
    yield _event(
        "message_start",
        {
            "message": {
                "id": "msg_01",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 11, "output_tokens": 1},
            }
        },
    )
    yield _event("ping", {})
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            yield _event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
            for word in block["text"].split(" "):
                piece = word if word == block["text"].split(" ")[-1] else word + " "
                yield _event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": piece}})
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            yield _event("content_block_start", {"index": index, "content_block": start})
            args = json.dumps(block["input"])
            for piece in (args[: len(args) // 2], args[len(args) // 2 :]):
                delta = {"type": "input_json_delta", "partial_json": piece}
                yield _event("content_block_delta", {"index": index, "delta": delta})
        yield _event("content_block_stop", {"index": index})
    yield _event(
        "message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 7}}
    )
    yield _event("message_stop", {})
