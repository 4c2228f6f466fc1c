"""A deterministic OpenAI-compatible upstream for the seed conformance suite, as a bare ASGI app.

    app = StandinApp()        # uvicorn serves it; base URL http://HOST:PORT (the seed adds /v1, ours is given it)

No framework and no FusionKit import: the seed's venv and ours both run it. Answers are a
function of the request alone, so the seed and our router, given the same requests, get the
same upstream behaviour:
- a judge request (the system prompt asks for JSON with "consensus") gets analysis JSON with the
  seed's keys and ours, ranking the `<candidate id="...">` labels it finds (or our fenced ones);
- a verifier request (the system prompt names "verdict") gets `{"verdict": "pass", "issues": []}`;
- a request with tools whose last message is not a tool result calls the first tool with
  `{"text": <last user text>}` (call id `call_<model>_<tool>`);
- anything else gets `<model> at <temperature>: <last user text>`, so panel members and self
  samples differ and every fused run goes through its judge.
Streams (`stream: true`) send the same text word by word. A test can hold every answer back:
`StandinApp(gate=threading.Event())` answers once the gate is set, and sets `arrived` when the
first request is waiting at it.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["StandinApp", "answer_for"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content or "")


def _last(messages: list[dict[str, Any]], role: str) -> str:
    for message in reversed(messages):
        if message.get("role") == role:
            return _text(message.get("content"))
    return ""


def answer_for(body: dict[str, Any]) -> dict[str, Any]:
    """The assistant message (and finish reason) the stand-in gives `body`."""
    messages = body.get("messages") or []
    system = " ".join(_text(m.get("content")) for m in messages if m.get("role") == "system")
    tools = body.get("tools") or []
    if tools and (messages[-1:] or [{}])[0].get("role") != "tool" and body.get("tool_choice") != "none":
        name = tools[0].get("function", tools[0]).get("name", "tool")
        call = {
            "id": f"call_{body.get('model')}_{name}",  # unique per member, as a provider's ids are
            "type": "function",
            "function": {"name": name, "arguments": json.dumps({"text": _last(messages, "user")})},
        }
        return {"message": {"role": "assistant", "content": None, "tool_calls": [call]}, "finish": "tool_calls"}
    if "verdict" in system:
        text = json.dumps({"verdict": "pass", "issues": []})
    elif "JSON" in system and "consensus" in system:
        # The seed's candidate tags, or ours, fenced with a code at the start of a line.
        found = re.findall(
            r'<candidate id="([^"]+)"|^<candidate-[0-9A-Za-z]+ id="([^"]+)"', _last(messages, "user"), re.M
        )
        ids = [plain or fenced for plain, fenced in found]
        text = json.dumps(
            {
                "consensus": ["the candidates agree on the main point"],
                "contradictions": [],
                "unique_insights": ["one candidate adds an example"],
                "coverage_gaps": [],
                "likely_errors": [],
                "recommended_final_structure": ["answer", "example"],
                "ranking": ids,
                "best_candidate_id": ids[0] if ids else None,
                "rationale": "the first candidate is the clearest",
            }
        )
    else:
        last_tool = _last(messages, "tool")
        seen = f" (tool said: {last_tool})" if last_tool else ""
        text = f"{body.get('model')} at {body.get('temperature')}: {_last(messages, 'user')}{seen}"
    return {"message": {"role": "assistant", "content": text}, "finish": "stop"}


def _usage(body: dict[str, Any], text: str) -> dict[str, int]:
    prompt = sum(len(_text(m.get("content")).split()) for m in body.get("messages") or [])
    completion = len(text.split())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class StandinApp:
    """`POST /v1/chat/completions` (JSON or SSE) and `GET /v1/models`; everything else is 404."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.gate = gate
        self.arrived = threading.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        raw = b""
        while True:
            message = await receive()
            raw += message.get("body", b"")
            if not message.get("more_body"):
                break
        path = scope["path"]
        if scope["method"] == "GET" and path == "/v1/models":
            await _json(send, 200, {"object": "list", "data": [{"id": "standin", "object": "model"}]})
        elif scope["method"] == "POST" and path == "/v1/chat/completions":
            body = json.loads(raw or b"{}")
            if self.gate is not None:
                self.arrived.set()
                await asyncio.to_thread(self.gate.wait)
            answer = answer_for(body)
            if body.get("stream"):
                await _stream(send, body, answer)
            else:
                text = answer["message"].get("content") or ""
                await _json(
                    send,
                    200,
                    {
                        "id": "chatcmpl-standin",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model", ""),
                        "choices": [{"index": 0, "message": answer["message"], "finish_reason": answer["finish"]}],
                        "usage": _usage(body, text),
                    },
                )
        else:
            await _json(send, 404, {"error": {"message": f"no route {path}", "type": "not_found_error"}})


async def _json(send: Send, status: int, payload: dict[str, Any]) -> None:
    data = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _stream(send: Send, body: dict[str, Any], answer: dict[str, Any]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    base = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": 0, "model": body.get("model", "")}

    async def frame(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> None:
        chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}
        await send({"type": "http.response.body", "body": f"data: {json.dumps(chunk)}\n\n".encode(), "more_body": True})

    message = answer["message"]
    await frame({"role": "assistant", "content": ""})
    text = message.get("content") or ""
    for word in re.findall(r"\S+\s*", text):
        await frame({"content": word})
    for index, call in enumerate(message.get("tool_calls") or []):
        await frame({"tool_calls": [{"index": index, **call}]})
    await frame({}, answer["finish"])
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {**base, "choices": [], "usage": _usage(body, text)}
        await send({"type": "http.response.body", "body": f"data: {json.dumps(usage)}\n\n".encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})
