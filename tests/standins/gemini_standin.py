"""A stand-in Gemini API: `POST /v1beta/models/{model}:generateContent` and
`:streamGenerateContent?alt=sse` (camelCase JSON; SSE `data:` frames, no event names, no [DONE]).

    state, script = StandinState(), GeminiScript(split_finish=False)
    app = create_gemini_standin(state, script)
    ...
    assert state.headers[-1]["x-goog-api-key"] == "test-key"

Answers are deterministic. The text is `echo: <text of the last user turn>` (or `state.answer`),
cut to `maxOutputTokens` words with finishReason MAX_TOKENS. With function declarations, a mode
other than NONE and a last turn that is not a function response, it calls a function with
`{"q": <that text>}`: the allowed one(s), else every declared one when the text says "parallel",
else the first (`state.rogue_tool` forces a name). `state.finish` overrides finishReason;
`state.stream_fault` breaks a stream after its first chunk ("error_frame": a `data: {"error"}`
frame, "truncate": no finishReason). Requests that the real API would refuse (unknown roles,
malformed parts) and scripted errors are answered with Google's body
`{"error": {"code", "message", "status"}}`. `GeminiScript` holds the Gemini-only switches.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from tests.standins.recorder import StandinState

__all__ = ["STATUSES", "USAGE", "GeminiScript", "create_gemini_standin", "get_field", "google_error"]

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
PART_KINDS = {"text", "inlineData", "fileData", "functionCall", "functionResponse"}


@dataclass
class GeminiScript:
    """Gemini-only behaviour a test can switch between requests."""

    split_finish: bool = True  # a streamed function call and the finishReason come in different chunks
    thought_signature: str | None = None  # base64 put on each functionCall part, as Gemini 3 does
    block_reason: str | None = None  # refuse the prompt: promptFeedback.blockReason and no candidates
    raw_body: str | None = None  # answer 200 with this text instead (a malformed answer)


def google_error(status: int, message: str, reason: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": status, "message": message, "status": STATUSES.get(status, "UNKNOWN")}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason}]
    return {"error": error}


def get_field(obj: dict[str, Any], name: str, default: Any = None) -> Any:
    """A message field under its JSON name or its proto name, as Google's parser accepts both.

    (The SDK itself sends function declarations with proto names: `parameters_json_schema`.)
    """
    snake = "".join(f"_{c.lower()}" if c.isupper() else c for c in name)
    return obj.get(name, obj.get(snake, default))


def _invalid(body: dict[str, Any]) -> str | None:
    """Why the real API would answer 400 INVALID_ARGUMENT, if it would."""
    contents = body.get("contents")
    if not isinstance(contents, list) or not contents:
        return "contents is not specified"
    for i, content in enumerate(contents):
        if content.get("role") not in ("user", "model"):
            return f"contents[{i}].role: please use a valid role: user, model"
        for j, part in enumerate(content.get("parts") or []):
            kinds = [kind for kind in PART_KINDS if get_field(part, kind) is not None]
            if len(kinds) != 1:
                return f"contents[{i}].parts[{j}]: exactly one data field must be set"
            call = get_field(part, "functionCall")
            if call is not None and not isinstance(call.get("args", {}), dict):
                return f"contents[{i}].parts[{j}].functionCall.args must be an object"
            response = get_field(part, "functionResponse")
            if response is not None and (not response.get("name") or not isinstance(response.get("response"), dict)):
                return f"contents[{i}].parts[{j}].functionResponse needs a name and an object response"
    return None


def _calls(body: dict[str, Any], text: str, state: StandinState) -> list[str]:
    declared = [d["name"] for t in get_field(body, "tools", []) for d in get_field(t, "functionDeclarations", [])]
    calling = get_field(get_field(body, "toolConfig", {}), "functionCallingConfig", {})
    if state.rogue_tool:
        return [state.rogue_tool]
    if not declared or calling.get("mode", "AUTO") == "NONE":
        return []
    if get_field(calling, "allowedFunctionNames"):
        return list(get_field(calling, "allowedFunctionNames"))
    return declared if "parallel" in text else declared[:1]


def _answer(body: dict[str, Any], state: StandinState, script: GeminiScript) -> tuple[list[dict[str, Any]], str]:
    last = body["contents"][-1]
    text = "".join(p.get("text", "") for p in last["parts"])
    after_tool = any(get_field(p, "functionResponse") is not None for p in last["parts"])
    names = [] if after_tool else _calls(body, text, state)
    if names:
        sign = {"thoughtSignature": script.thought_signature} if script.thought_signature else {}
        return [{"functionCall": {"name": n, "args": {"q": text}}, **sign} for n in names], state.finish or "STOP"
    words = (state.answer if state.answer is not None else f"echo: {text}").split(" ")
    limit = get_field(get_field(body, "generationConfig", {}), "maxOutputTokens")
    finish = "STOP"
    if limit is not None and len(words) > limit:
        words, finish = words[:limit], "MAX_TOKENS"
    return [{"text": " ".join(words)}], state.finish or finish


def _response(parts: list[dict[str, Any]], finish: str | None, usage: dict[str, int]) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": "gemini-standin"}


def _blocked(reason: str) -> dict[str, Any]:
    usage = {"promptTokenCount": USAGE["promptTokenCount"], "totalTokenCount": USAGE["promptTokenCount"]}
    return {"promptFeedback": {"blockReason": reason}, "usageMetadata": usage, "modelVersion": "gemini-standin"}


def create_gemini_standin(state: StandinState, script: GeminiScript | None = None) -> FastAPI:
    app = FastAPI()
    gemini = script or GeminiScript()

    # The model and the action share one path segment ("gemini-x:generateContent").
    @app.post("/v1beta/models/{model_action}", response_model=None)
    async def generate(model_action: str, request: Request) -> Response:
        _, _, action = model_action.partition(":")
        body = await request.json()
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        async with state.handling(path, body, dict(request.headers)) as error:
            if error is not None:
                return JSONResponse(error.body, status_code=error.status, headers=error.headers)
            if action not in ("generateContent", "streamGenerateContent"):
                return JSONResponse(google_error(404, f"unknown action {action}"), status_code=404)
            problem = _invalid(body)
            if problem is not None:
                return JSONResponse(google_error(400, problem), status_code=400)
            if gemini.raw_body is not None:
                return PlainTextResponse(gemini.raw_body, media_type="application/json")
            if gemini.block_reason is not None:
                whole, frames = _blocked(gemini.block_reason), [_blocked(gemini.block_reason)]
            else:
                parts, finish = _answer(body, state, gemini)
                whole, frames = _response(parts, finish, USAGE), _chunks(parts, finish, gemini.split_finish)
        if action == "generateContent":
            return JSONResponse(whole)
        return StreamingResponse(_sse(frames, state.stream_fault), media_type="text/event-stream")

    return app


def _chunks(parts: list[dict[str, Any]], finish: str, split_finish: bool) -> list[dict[str, Any]]:
    """The stream of an answer: text word by word, calls in one chunk; usage grows, complete at the end."""
    partial = {"promptTokenCount": USAGE["promptTokenCount"], "totalTokenCount": USAGE["promptTokenCount"]}
    if "text" in parts[0]:
        words = parts[0]["text"].split(" ")
        pieces = [word + ("" if i == len(words) - 1 else " ") for i, word in enumerate(words)]
        chunks = [_response([{"text": piece}], None, partial) for piece in pieces[:-1]]
        return [*chunks, _response([{"text": pieces[-1]}], finish, USAGE)]
    if split_finish:
        return [_response(parts, None, partial), _response([{"text": ""}], finish, USAGE)]
    return [_response(parts, finish, USAGE)]


async def _sse(frames: list[dict[str, Any]], fault: str | None) -> AsyncIterator[bytes]:
    for i, data in enumerate(frames):
        if fault and i == 1:
            if fault == "error_frame":
                yield f"data: {json.dumps(google_error(500, 'stream broke'))}\r\n\r\n".encode()
            return
        yield f"data: {json.dumps(data)}\r\n\r\n".encode()
