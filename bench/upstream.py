"""A minimal OpenAI-compatible upstream for benchmarks, cheap enough never to be the bottleneck.

    python -m bench.upstream --port 9000 --latency-ms 100 --tokens 200 --tokens-per-s 50

A bare ASGI callable (no framework) with precomputed response bytes; each upstream's answer
starts with its own label, so a panel over several of them never agrees by accident. Non-streaming answers
after `latency_ms`; streaming sends `tokens` chunks paced at `tokens_per_s` (0 = at once). A
request with a `response_format` gets a small valid judge-analysis JSON, so routers parse it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

import uvicorn

JUDGE = json.dumps(
    {
        "consensus": ["agree"],
        "contradictions": [],
        "unique_insights": [],
        "coverage_gaps": [],
        "likely_errors": [],
        "ranking": ["c1", "c2", "c3"],
        "best_candidate_id": "c1",
        "rationale": "bench",
    }
)


def build(latency_ms: float, tokens: int, tokens_per_s: float, label: str) -> Any:
    # Each upstream answers differently (its label first), so a panel over them is never unanimous.
    text = " ".join([label, *(f"tok{i}" for i in range(tokens - 1))])

    def completion(content: str) -> bytes:
        return json.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 0,
                "model": "bench",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": tokens, "total_tokens": 10 + tokens},
            }
        ).encode()

    plain, judged = completion(text), completion(JUDGE)
    chunk_head = b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"bench","choices":'
    token_frames = [
        chunk_head
        + json.dumps([{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]).encode()
        + b"}\n\n"
        for word in text.split()
    ]
    tail = (
        chunk_head
        + b'[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
        + chunk_head
        + b'[],"usage":{"prompt_tokens":10,"completion_tokens":%d,"total_tokens":%d}}\n\n' % (tokens, tokens + 10)
        + b"data: [DONE]\n\n"
    )
    models = json.dumps(
        {"object": "list", "data": [{"id": "bench", "object": "model", "created": 0, "owned_by": "bench"}]}
    ).encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"].endswith("/models") or scope["path"].endswith("/health"):
            await _send(send, 200, models)
            return
        stream = b'"stream":true' in body or b'"stream": true' in body
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        if not stream:
            await _send(send, 200, judged if b"response_format" in body else plain)
            return
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        pause = 1 / tokens_per_s if tokens_per_s else 0
        for frame in token_frames:
            await send({"type": "http.response.body", "body": frame, "more_body": True})
            if pause:
                await asyncio.sleep(pause)
        await send({"type": "http.response.body", "body": tail})

    return app


async def _send(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--tokens-per-s", type=float, default=0)
    args = parser.parse_args()
    uvicorn.run(
        build(args.latency_ms, args.tokens, args.tokens_per_s, f"upstream-{args.port}"),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
