"""A stand-in Anthropic Messages API (`POST /v1/messages`), JSON and SSE, as the real one speaks it.

    state = StandinState()
    upstream = live_server(create_anthropic_standin(state))   # the SDK's base_url: upstream.url, no /v1

Requests are checked as Anthropic checks them, answering 400 `invalid_request_error` (or 401
without `x-api-key`) with Anthropic's error body: the `anthropic-version` header, `max_tokens`,
roles user/assistant only, non-empty text blocks, every `tool_use` answered by a `tool_result`
in the next message and every `tool_result` answering a `tool_use` of the previous one, tools
defined whenever tool blocks appear, `temperature` and `top_p` in 0..1, known `tool_choice`
types, and no unknown top-level fields (an OpenAI field leaking upstream is an error).

Answers are a pure function of the request, so tests can compute them:
- the "question" is the text of the last user turn (text blocks joined by spaces), or, when it
  holds only tool results, their contents joined by spaces;
- with tools, a tool_choice other than none, and a last turn that is not a tool result: tool
  calls with input `{"q": question}` (`{}` for a tool whose schema has no `q`) and ids
  `toolu_<i>_<name>`: the named tool for type tool,
  else every tool (only the first with `disable_parallel_tool_use`); with type auto (or no
  tool_choice) the calls follow a text block "Let me check."; stop_reason tool_use;
- otherwise the text `echo: <question>` (or `state.answer`), one token per word, cut before the
  first of `stop_sequences` it contains (stop_reason stop_sequence) or after `max_tokens` tokens
  (stop_reason max_tokens), else stop_reason end_turn;
- usage: input_tokens = words in `system` and in every text block and tool result;
  output_tokens = words of the answer's text + 5 per tool call (cumulative in `message_delta`).

Honours `state.delay_s`, scripted errors (`state.fail_next(status, anthropic_error(...), headers)`),
`state.answer`, `state.finish` (the stop_reason to report, whatever the answer) and
`state.stream_fault`: "error_first" (an `event: error` right after message_start),
"error_frame" (an `event: error` after the first content delta), "truncate" (the stream ends
after the first content delta, without message_delta and message_stop) or "reset" (the
connection is dropped after the first content delta).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from tests.standins.recorder import StandinState

__all__ = ["OVERLOADED", "anthropic_error", "create_anthropic_standin", "words"]

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
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
# Top-level fields the Messages API takes; anything else is "Extra inputs are not permitted".
KNOWN_FIELDS = {
    "model",
    "messages",
    "max_tokens",
    "system",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "metadata",
    "thinking",
    "service_tier",
    "container",
    "output_config",
    "cache_control",
}
IMAGE_TYPES = {"image/jpeg", "image/png", "image/gif", "image/webp"}
TOOL_CALL_TOKENS = 5


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


def words(text: str) -> int:
    return len(text.split())


class _Invalid(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def _blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        if not content:
            raise _Invalid(f"{where}: user messages must have non-empty content")
        return [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise _Invalid(f"{where}.content: messages must have non-empty content")
    return content


def _check_block(block: dict[str, Any], role: str, where: str) -> None:
    kind = block.get("type")
    if kind == "text":
        if not isinstance(block.get("text"), str) or not block["text"]:
            raise _Invalid(f"{where}.text: text content blocks must be non-empty")
    elif kind == "image":
        source = block.get("source") or {}
        if source.get("type") == "base64":
            if source.get("media_type") not in IMAGE_TYPES or not source.get("data"):
                raise _Invalid(f"{where}.source: Input should be a valid base64 image source")
        elif source.get("type") != "url" or not source.get("url"):
            raise _Invalid(f"{where}.source: Input tag '{source.get('type')}' does not match any of the expected tags")
    elif kind == "tool_use":
        if role != "assistant":
            raise _Invalid(f"{where}: tool_use blocks may only appear in assistant messages")
        if not block.get("id") or not block.get("name") or not isinstance(block.get("input"), dict):
            raise _Invalid(f"{where}.input: Input should be a valid dictionary")
    elif kind == "tool_result":
        if role != "user":
            raise _Invalid(f"{where}: tool_result blocks may only appear in user messages")
        if not block.get("tool_use_id"):
            raise _Invalid(f"{where}.tool_use_id: Field required")
    else:
        raise _Invalid(f"{where}: Input tag '{kind}' does not match any of the expected tags")


def _validate(body: dict[str, Any]) -> None:
    for field in body:
        if field not in KNOWN_FIELDS:
            raise _Invalid(f"{field}: Extra inputs are not permitted")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _Invalid("model: Field required")
    if not isinstance(body.get("max_tokens"), int) or body["max_tokens"] < 1:
        raise _Invalid("max_tokens: Field required")
    for name in ("temperature", "top_p"):
        if name in body and not (isinstance(body[name], int | float) and 0 <= body[name] <= 1):
            raise _Invalid(f"{name}: range: 0..1")
    tools = body.get("tools") or []
    names = set()
    for i, tool in enumerate(tools):
        if not tool.get("name") or (tool.get("input_schema") or {}).get("type") != "object":
            raise _Invalid(f"tools.{i}.input_schema.type: Input should be 'object'")
        names.add(tool["name"])
    choice = body.get("tool_choice")
    if choice is not None and not tools:
        raise _Invalid("tool_choice: may only be specified while providing tools")
    if choice is not None:
        if choice.get("type") not in ("auto", "any", "tool", "none"):
            raise _Invalid("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
        if choice["type"] == "tool" and choice.get("name") not in names:
            raise _Invalid(f"tool_choice.name: tool '{choice.get('name')}' is not defined in tools")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _Invalid("messages: at least one message is required")
    pending: set[str] = set()  # tool_use ids the next message must answer
    used_tools = False
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            raise _Invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        blocks = _blocks(message.get("content"), f"messages.{i}")
        for j, block in enumerate(blocks):
            _check_block(block, role, f"messages.{i}.content.{j}")
        answered = {b["tool_use_id"] for b in blocks if b["type"] == "tool_result"}
        if answered - pending:
            raise _Invalid(
                f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{', '.join(sorted(answered - pending))}. Each `tool_result` block must have a corresponding "
                "`tool_use` block in the previous message."
            )
        if pending - answered:
            raise _Invalid(
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                f"{', '.join(sorted(pending - answered))}. Each `tool_use` block must have a corresponding "
                "`tool_result` block in the next message."
            )
        pending = {b["id"] for b in blocks if b["type"] == "tool_use"}
        used_tools = used_tools or bool(pending or answered)
    if used_tools and not tools:
        raise _Invalid("Requests which include `tool_use` or `tool_result` blocks must define tools.")


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content") or ""
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content if b.get("type") == "text")
    return str(content)


def _input_tokens(body: dict[str, Any]) -> int:
    system = body.get("system") or ""
    texts = [system] if isinstance(system, str) else [b.get("text", "") for b in system]
    for message in body["messages"]:
        for block in _blocks(message["content"], ""):
            if block["type"] == "text":
                texts.append(block["text"])
            elif block["type"] == "tool_result":
                texts.append(_result_text(block))
    return sum(words(t) for t in texts)


@dataclass
class _Plan:
    blocks: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None
    usage: dict[str, int]


def _plan(body: dict[str, Any], state: StandinState) -> _Plan:
    last = _blocks(body["messages"][-1]["content"], "")
    results = [_result_text(b) for b in last if b["type"] == "tool_result"]
    texts = [b["text"] for b in last if b["type"] == "text"]
    question = " ".join(texts or results)
    tools = body.get("tools") or []
    choice = body.get("tool_choice") or {"type": "auto"}
    blocks: list[dict[str, Any]] = []
    stop_sequence = None
    if tools and choice["type"] != "none" and not results:
        chosen = [t for t in tools if t["name"] == choice["name"]] if choice["type"] == "tool" else tools
        if choice.get("disable_parallel_tool_use"):
            chosen = chosen[:1]
        if choice["type"] == "auto":
            blocks.append({"type": "text", "text": "Let me check."})
        for i, tool in enumerate(chosen):
            call_id = f"toolu_{i}_{tool['name']}"
            arguments = {"q": question} if "q" in tool["input_schema"].get("properties", {}) else {}
            blocks.append({"type": "tool_use", "id": call_id, "name": tool["name"], "input": arguments})
        stop = "tool_use"
    else:
        text = state.answer if state.answer is not None else f"echo: {question}"
        stop = "end_turn"
        hits = [(text.find(s), s) for s in body.get("stop_sequences") or [] if s and s in text]
        if hits:
            at, stop_sequence = min(hits)
            text, stop = text[:at], "stop_sequence"
        tokens = _tokens(text)
        if len(tokens) > body["max_tokens"]:
            text, stop, stop_sequence = "".join(tokens[: body["max_tokens"]]), "max_tokens", None
        blocks.append({"type": "text", "text": text})
    output = sum(words(b["text"]) if b["type"] == "text" else TOOL_CALL_TOKENS for b in blocks)
    usage = {
        "input_tokens": _input_tokens(body),
        "output_tokens": output,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    return _Plan(blocks, state.finish or stop, stop_sequence, usage)


def _tokens(text: str) -> list[str]:
    """Words with their following space, so joined tokens give the text back."""
    pieces = text.split(" ")
    return [p + (" " if i < len(pieces) - 1 else "") for i, p in enumerate(pieces) if p or i < len(pieces) - 1]


def _check_headers(headers: dict[str, str]) -> JSONResponse | None:
    if not headers.get("x-api-key"):
        return JSONResponse(anthropic_error(401, "x-api-key header is required"), status_code=401)
    if not headers.get("anthropic-version"):
        return JSONResponse(anthropic_error(400, "anthropic-version: header is required"), status_code=400)
    return None


def create_anthropic_standin(state: StandinState) -> FastAPI:
    app = FastAPI()

    @app.post("/v1/messages", response_model=None)
    async def messages(request: Request) -> Response:
        body = await request.json()
        headers = dict(request.headers)
        async with state.handling(request.url.path, body, headers) as error:
            if error is not None:
                return JSONResponse(error.body, status_code=error.status, headers=error.headers)
            refused = _check_headers(headers)
            if refused is not None:
                return refused
            try:
                _validate(body)
            except _Invalid as exc:
                return JSONResponse(anthropic_error(exc.status, str(exc)), status_code=exc.status)
            plan = _plan(body, state)
        message = {
            "id": "msg_standin_01",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": plan.blocks,
            "stop_reason": plan.stop_reason,
            "stop_sequence": plan.stop_sequence,
            "usage": plan.usage,
        }
        if not body.get("stream"):
            return JSONResponse(message)
        return StreamingResponse(_stream(message, state.stream_fault), media_type="text/event-stream")

    return app


def _event(kind: str, data: dict[str, Any]) -> bytes:
    """One SSE frame as Anthropic sends it: an `event:` line equal to the data's `type`."""
    return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n".encode()


def _block_events(index: int, block: dict[str, Any]) -> list[bytes]:
    """content_block_start, the deltas, content_block_stop."""
    start: dict[str, Any]
    if block["type"] == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": token} for token in _tokens(block["text"])]
    else:
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        args = json.dumps(block["input"]) if block["input"] else ""
        # Anthropic opens with an empty partial_json, then sends the input in pieces (none for an empty input).
        pieces = ["", args[: len(args) // 2], args[len(args) // 2 :]] if args else [""]
        deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
    return [
        _event("content_block_start", {"index": index, "content_block": start}),
        *(_event("content_block_delta", {"index": index, "delta": delta}) for delta in deltas),
        _event("content_block_stop", {"index": index}),
    ]


async def _stream(message: dict[str, Any], fault: str | None) -> AsyncIterator[bytes]:
    usage = message["usage"]
    opening = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": {**usage}}
    opening["usage"]["output_tokens"] = 1  # Anthropic reports a token or so here; the true count comes last
    yield _event("message_start", {"message": opening})
    yield _event("ping", {})
    if fault == "error_first":
        yield _event("error", {"error": OVERLOADED["error"]})
        return
    deltas = 0
    for index, block in enumerate(message["content"]):
        for frame in _block_events(index, block):
            yield frame
            if frame.startswith(b"event: content_block_delta"):
                deltas += 1
                if deltas == 1 and fault == "error_frame":
                    yield _event("error", {"error": OVERLOADED["error"]})
                    return
                if deltas == 1 and fault == "truncate":
                    return
                if deltas == 1 and fault == "reset":
                    raise ConnectionAbortedError("stand-in drops the connection mid-stream (stream_fault='reset')")
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    yield _event("message_delta", {"delta": delta, "usage": {"output_tokens": usage["output_tokens"]}})
    yield _event("message_stop", {})
