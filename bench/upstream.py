"""The benchmarks' upstream: a minimal OpenAI-compatible server that costs almost no CPU.

    python -m bench.upstream --port 9000 --profile p1=100 --profile synth=0,200,50
    # base URLs: http://127.0.0.1:9000/p1/v1 and http://127.0.0.1:9000/synth/v1

One process serves several upstreams ("profiles"), told apart by the first path segment; a
path without a known profile gets the `default` one. A profile is `NAME=LATENCY_MS[,TOKENS[,TOKENS_PER_S]]`:
a whole answer leaves `LATENCY_MS` after the request; a streamed one sends its first token
after `LATENCY_MS`, then one token every 1/TOKENS_PER_S seconds (0 = all at once). Each answer
starts with its profile's name, so a panel over several profiles never agrees by accident. A
request carrying `response_format`, or the judge's system prompt, gets a valid judge-analysis
JSON object, so the router takes its normal judge-then-synthesize path.

It is a bare asyncio protocol, not a web framework: HTTP/1.1 with keep-alive, Content-Length
request bodies, every response's bytes built at start-up, timers instead of tasks. It runs in
its own process so it never shares a GIL with what is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import cast

from bench.aio import run_fast

__all__ = ["Profile", "main", "parse_profile", "serve"]

JUDGE_ANALYSIS = json.dumps(
    {
        "consensus": ["the candidates agree on the outline"],
        "contradictions": [],
        "unique_insights": [],
        "coverage_gaps": [],
        "likely_errors": [],
        "ranking": ["c1", "c2", "c3"],
        "best_candidate_id": "c1",
        "rationale": "bench stand-in",
    }
)
# What marks a judge request when the router does not ask for structured output (openai-compatible).
JUDGE_MARKERS = (b'"response_format"', b"You are the judge")
_STREAM_MARKERS = (b'"stream":true', b'"stream": true')
_USAGE_MARKERS = (b'"include_usage":true', b'"include_usage": true')


@dataclass(frozen=True)
class Profile:
    name: str
    latency_ms: float = 0
    tokens: int = 20
    tokens_per_s: float = 0


def parse_profile(text: str) -> Profile:
    name, _, spec = text.partition("=")
    values = [0.0, 20.0, 0.0]  # latency_ms, tokens, tokens_per_s
    numbers = [float(n) for n in spec.split(",")] if spec else []
    if not name or len(numbers) > len(values):
        raise argparse.ArgumentTypeError(f"profile {text!r}: expected NAME=LATENCY_MS[,TOKENS[,TOKENS_PER_S]]")
    values[: len(numbers)] = numbers
    if values[1] < 1:
        raise argparse.ArgumentTypeError(f"profile {text!r}: at least one token")
    return Profile(name, values[0], int(values[1]), values[2])


def _response(body: bytes, content_type: bytes = b"application/json") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: " + content_type + b"\r\ncontent-length: %d\r\n\r\n" % len(body) + body


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n" % len(data) + data + b"\r\n"


class _Answers:
    """Every byte a profile ever sends, built once."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        words = [profile.name, *(f"tok{i}" for i in range(1, profile.tokens))]
        usage = {"prompt_tokens": 10, "completion_tokens": profile.tokens, "total_tokens": 10 + profile.tokens}
        self.plain = _response(self._completion(" ".join(words), usage))
        self.judge = _response(self._completion(JUDGE_ANALYSIS, usage))
        head = b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":0,"model":"bench","choices":'
        self.stream_head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
            + _chunk(head + b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n')
        )
        self.tokens = [
            _chunk(
                head
                + json.dumps([{"index": 0, "delta": {"content": word + " "}, "finish_reason": None}]).encode()
                + b"}\n\n"
            )
            for word in words
        ]
        self.finish = _chunk(head + b'[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
        self.usage = _chunk(head + b'[],"usage":' + json.dumps(usage).encode() + b"}\n\n")
        self.done = _chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n"

    @staticmethod
    def _completion(content: str, usage: dict[str, int]) -> bytes:
        return json.dumps(
            {
                "id": "chatcmpl-bench",
                "object": "chat.completion",
                "created": 0,
                "model": "bench",
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
                ],
                "usage": usage,
            }
        ).encode()


_MODELS = _response(
    json.dumps(
        {"object": "list", "data": [{"id": "bench", "object": "model", "created": 0, "owned_by": "bench"}]}
    ).encode()
)
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
_TRACES_TAKEN = _response(b"", b"application/x-protobuf")  # an empty ExportTraceServiceResponse: all accepted
_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


class _Connection(asyncio.Protocol):
    """One client connection: requests are answered one at a time, in order (HTTP/1.1 keep-alive)."""

    def __init__(self, answers: dict[str, _Answers], default: _Answers) -> None:
        self.answers = answers
        self.default = default
        self.buffer = b""
        self.busy = False
        self.close_after = False
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, though they have its interface.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        # A client that gave up (the router's member timeout) stops the pending answer.
        if self.timer is not None:
            self.timer.cancel()
        self.transport = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._next_request()

    def _next_request(self) -> None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0 or self.transport is None:
            return
        head = self.buffer[:end].decode("latin-1")
        lines = head.split("\r\n")
        try:
            method, path, _ = lines[0].split(" ", 2)
        except ValueError:
            self.transport.write(_BAD_REQUEST)
            self.transport.close()
            return
        length = 0
        self.close_after = False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                self.close_after = True
        if len(self.buffer) < end + 4 + length:
            return  # the body is still arriving
        body = self.buffer[end + 4 : end + 4 + length]
        self.buffer = self.buffer[end + 4 + length :]
        self.busy = True
        self._answer(method, path, body)

    def _answer(self, method: str, path: str, body: bytes) -> None:
        first, _, rest = path.lstrip("/").partition("/")
        answers = self.answers.get(first)
        if answers is None:
            answers, rest = self.default, path.lstrip("/")
        if method == "GET":
            self._send(_MODELS if rest in ("health", "v1/models", "v1/health", "models") else _NOT_FOUND)
            return
        if method == "POST" and rest == "v1/traces":
            self._send(_TRACES_TAKEN)  # an OTLP/HTTP collector that keeps nothing (the observability bench)
            return
        if method != "POST" or not rest.endswith("chat/completions"):
            self._send(_NOT_FOUND)
            return
        delay = answers.profile.latency_ms / 1000
        if any(m in body for m in _STREAM_MARKERS):
            usage = any(m in body for m in _USAGE_MARKERS)
            self.timer = self.loop.call_later(delay, self._stream, answers, 0, usage)
        else:
            reply = answers.judge if any(m in body for m in JUDGE_MARKERS) else answers.plain
            self.timer = self.loop.call_later(delay, self._send, reply)

    def _stream(self, answers: _Answers, index: int, usage: bool) -> None:
        if self.transport is None:
            return
        if index == 0:
            self.transport.write(answers.stream_head)
        rate = answers.profile.tokens_per_s
        # Without a rate the whole answer goes at once; with one, a token per tick.
        stop = len(answers.tokens) if rate == 0 else index + 1
        self.transport.write(b"".join(answers.tokens[index:stop]))
        if stop < len(answers.tokens):
            self.timer = self.loop.call_later(1 / rate, self._stream, answers, stop, usage)
            return
        self._send(answers.finish + (answers.usage if usage else b"") + answers.done)

    def _send(self, data: bytes) -> None:
        self.timer = None
        if self.transport is None:
            return
        self.transport.write(data)
        self.busy = False
        if self.close_after:
            self.transport.close()
            return
        if self.buffer:
            self._next_request()


async def serve(port: int, profiles: list[Profile], host: str = "127.0.0.1") -> None:
    answers = {p.name: _Answers(p) for p in profiles}
    default = answers.get("default") or _Answers(Profile("default"))
    server = await asyncio.get_running_loop().create_server(
        lambda: _Connection(answers, default), host, port, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.upstream")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--profile",
        type=parse_profile,
        action="append",
        default=[],
        help="NAME=LATENCY_MS[,TOKENS[,TOKENS_PER_S]]; repeat for several upstreams",
    )
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        run_fast(serve(args.port, args.profile))


if __name__ == "__main__":
    main()
