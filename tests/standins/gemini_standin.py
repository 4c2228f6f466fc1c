"""A stand-in Gemini API: `POST /v1beta/models/{model}:generateContent` and
`:streamGenerateContent?alt=sse` (camelCase JSON; SSE `data:` frames, no event names, no [DONE]).

The answer is `echo: <text of the last user turn>` (or `state.answer`); with function
declarations (and a mode other than NONE, and a last turn that is not a function response) it
calls the first function with `{"q": <that text>}`. In streams the call and the finishReason
arrive in different chunks, as Gemini may send them. `state.finish` overrides finishReason.
Scripted errors are answered with Google's body `{"error": {"code", "message", "status"}}`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.standins.recorder import StandinState

__all__ = ["create_gemini_standin", "google_error"]

STATUSES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
USAGE = {"promptTokenCount": 9, "candidatesTokenCount": 5, "totalTokenCount": 14}


def google_error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": STATUSES.get(status, "UNKNOWN")}}


def _answer(body: dict[str, Any], state: StandinState) -> tuple[list[dict[str, Any]], str]:
    last = body["contents"][-1]
    text = "".join(p.get("text", "") for p in last["parts"])
    after_tool = any("functionResponse" in p for p in last["parts"])
    declarations = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations", [])]
    mode = ((body.get("toolConfig") or {}).get("functionCallingConfig") or {}).get("mode", "AUTO")
    if declarations and mode != "NONE" and not after_tool:
        return [{"functionCall": {"name": declarations[0]["name"], "args": {"q": text}}}], state.finish or "STOP"
    answer = state.answer if state.answer is not None else f"echo: {text}"
    return [{"text": answer}], state.finish or "STOP"


def _response(parts: list[dict[str, Any]], finish: str | None, usage: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    data: dict[str, Any] = {"candidates": [candidate], "modelVersion": "gemini-standin"}
    if usage:
        data["usageMetadata"] = USAGE
    return data


def create_gemini_standin(state: StandinState) -> FastAPI:
    app = FastAPI()

    @app.post("/v1beta/models/{model_action}", response_model=None)
    async def generate(model_action: str, request: Request) -> Response:
        _, _, action = model_action.partition(":")
        body = await request.json()
        async with state.handling(request.url.path, body, dict(request.headers)) as error:
            if error is not None:
                return JSONResponse(error.body, status_code=error.status, headers=error.headers)
            if action not in ("generateContent", "streamGenerateContent"):
                return JSONResponse(google_error(404, f"unknown action {action}"), status_code=404)
            parts, finish = _answer(body, state)
        if action == "generateContent":
            return JSONResponse(_response(parts, finish, usage=True))
        return StreamingResponse(_stream(parts, finish), media_type="text/event-stream")

    return app


async def _stream(parts: list[dict[str, Any]], finish: str) -> AsyncIterator[bytes]:
    def frame(data: dict[str, Any]) -> bytes:
        return f"data: {json.dumps(data)}\r\n\r\n".encode()

    if "text" in parts[0]:
        words = parts[0]["text"].split(" ")
        for i, word in enumerate(words):
            last = i == len(words) - 1
            yield frame(_response([{"text": word + ("" if last else " ")}], finish if last else None, usage=last))
    else:
        yield frame(_response(parts, None, usage=False))
        yield frame(_response([{"text": ""}], finish, usage=True))
