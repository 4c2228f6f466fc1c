"""A stand-in OpenAI Chat Completions server (`POST /v1/chat/completions`, `GET /v1/models`).

    state = StandinState()
    upstream = live_server(create_openai_standin(state))   # base_url = upstream.url + "/v1"

Answers are a pure function of the request, so tests can compute them: the text is
`echo: <last user text>` (or the next of `state.answers`, else `state.answer`), one token per
word; a request with tools (unless `tool_choice` is "none" or the last message is a tool result)
calls every tool in parallel
(call ids `call_<index>_<name>`) with `{"q": <last user text>}`. `max_tokens` /
`max_completion_tokens` cut the answer with finish_reason "length"; `logprobs: true` adds
`logprobs.content`, one entry per token with logprob -0.5 (per chunk when streaming). Streams send each tool call
as OpenAI does (a head, then the arguments in two pieces) and the usage chunk only when asked.
Like OpenAI, `stream_options` without `stream: true` is a 400.

Honours `state.delay_s`, scripted errors (answered with OpenAI's error body and the given
headers), `state.answer`, `state.rogue_tool`, `state.finish` (the finish_reason to report, e.g.
"content_filter", or "stop" beside tool calls as some servers do) and `state.stream_fault`:
- "error_frame": after two tokens, `data: {"error": {...}}` and the end of the stream;
- "truncate": after two tokens, a clean end with no finish_reason and no `[DONE]`;
- "reset": after two tokens, the connection is dropped mid-body;
- "compact_tool_calls": each tool call in one delta, arguments whole and no index (as some
  OpenAI-compatible servers send them);
- "malformed_json": the answer is a cut-off JSON body (streamed: one `data:` frame of cut-off JSON).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.standins.recorder import StandinState

__all__ = ["create_openai_standin", "expected_text"]


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return "".join(p.get("text", "") for p in content if p.get("type") == "text")
            return str(content or "")
    return ""


def expected_text(body: dict[str, Any], state: StandinState | None = None) -> str:
    if state is not None and state.answer is not None:
        return state.answer
    return f"echo: {_last_user_text(body)}"


def _plan(body: dict[str, Any], state: StandinState) -> tuple[list[str], list[dict[str, Any]], str]:
    """(text tokens, tool calls, finish_reason) for a request."""
    tools = body.get("tools") or []
    if state.rogue_tool:
        tools = [{"type": "function", "function": {"name": state.rogue_tool}}]
    last_role = (body.get("messages") or [{}])[-1].get("role")
    if tools and body.get("tool_choice") != "none" and last_role != "tool":
        question = _last_user_text(body)
        calls = [
            {
                "id": f"call_{i}_{t['function']['name']}",
                "type": "function",
                "function": {"name": t["function"]["name"], "arguments": json.dumps({"q": question})},
            }
            for i, t in enumerate(tools)
        ]
        return [], calls, state.finish or "tool_calls"
    words = (state.answers.pop(0) if state.answers else expected_text(body, state)).split(" ")
    tokens = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words) if w or len(words) == 1]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit is not None and len(tokens) > limit:
        return tokens[:limit], [], "length"
    return tokens, [], state.finish or "stop"


def logprobs_of(tokens: list[str]) -> dict[str, Any]:
    return {"content": [{"token": t, "logprob": -0.5, "bytes": list(t.encode()), "top_logprobs": []} for t in tokens]}


def _usage(body: dict[str, Any], completion: int) -> dict[str, int]:
    prompt = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _sse(data: dict[str, Any] | str) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data)}\n\n".encode()


def create_openai_standin(state: StandinState) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": "standin-1", "object": "model", "created": 0, "owned_by": "tests"}]}

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> Response:
        body = await request.json()
        async with state.handling(request.url.path, body, dict(request.headers)) as error:
            if error is not None:
                return JSONResponse(error.body, status_code=error.status, headers=error.headers)
            if body.get("stream_options") is not None and not body.get("stream"):
                detail = "The 'stream_options' parameter is only allowed when 'stream' is enabled."
                problem = {"message": detail, "type": "invalid_request_error", "param": "stream_options", "code": None}
                return JSONResponse({"error": problem}, status_code=400)
            tokens, calls, finish = _plan(body, state)
            if state.stream_fault == "malformed_json":
                if body.get("stream"):
                    return Response(b'data: {"id": "chatcmpl-broken", "choices": [\n\n', media_type="text/event-stream")
                return Response(b'{"id": "chatcmpl-broken", "choices": [', media_type="application/json")
        base = {"id": "chatcmpl-standin", "created": int(time.time()), "model": body.get("model", "")}
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": "".join(tokens) if not calls else None}
            if calls:
                message["tool_calls"] = calls
            return JSONResponse(
                {
                    **base,
                    "object": "chat.completion",
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "finish_reason": finish,
                            "logprobs": logprobs_of(tokens) if body.get("logprobs") else None,
                        }
                    ],
                    "usage": _usage(body, len(tokens) + 5 * len(calls)),
                }
            )
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            _stream(base, tokens, calls, finish, include_usage, body, state), media_type="text/event-stream"
        )

    return app


async def _stream(
    base: dict[str, Any],
    tokens: list[str],
    calls: list[dict[str, Any]],
    finish: str,
    include_usage: bool,
    body: dict[str, Any],
    state: StandinState,
) -> AsyncIterator[bytes]:
    chunk = {**base, "object": "chat.completion.chunk"}

    def delta(d: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": d, "finish_reason": finish_reason}
        if body.get("logprobs") and d.get("content"):
            choice["logprobs"] = logprobs_of([d["content"]])
        return _sse({**chunk, "choices": [choice]})

    yield delta({"role": "assistant", "content": ""})
    for i, token in enumerate(tokens):
        if i == 2 and state.stream_fault in ("error_frame", "truncate", "reset"):
            if state.stream_fault == "reset":
                raise ConnectionAbortedError("stand-in drops the connection mid-stream (stream_fault='reset')")
            if state.stream_fault == "error_frame":
                yield _sse(
                    {
                        "error": {
                            "message": "stand-in failed mid-stream",
                            "type": "server_error",
                            "param": None,
                            "code": None,
                        }
                    }
                )
            return  # "truncate": the connection ends with no finish and no [DONE]
        yield delta({"content": token})
    for index, call in enumerate(calls):
        if state.stream_fault == "compact_tool_calls":
            yield delta({"tool_calls": [call]})
            continue
        head = {
            "index": index,
            "id": call["id"],
            "type": "function",
            "function": {"name": call["function"]["name"], "arguments": ""},
        }
        yield delta({"tool_calls": [head]})
        args = call["function"]["arguments"]
        middle = len(args) // 2
        for piece in (args[:middle], args[middle:]):
            yield delta({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield delta({}, finish)
    if include_usage:
        yield _sse({**chunk, "choices": [], "usage": _usage(body, len(tokens) + 5 * len(calls))})
    yield _sse("[DONE]")
