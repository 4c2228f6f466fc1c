"""A bounded load generator that runs in its own process: N requests at concurrency C against one URL.

    result = run_load("http://127.0.0.1:8080/v1/chat/completions", body, requests=400, concurrency=8)
    result.latencies_ms, result.req_per_s, result.first_token_ms   # the last only for stream bodies

`run_load` starts `python -m bench.load` with the job on stdin and reads the result from its
stdout, so the client never shares a GIL (or an event loop) with the process it measures. The
client is raw HTTP/1.1 over asyncio streams on uvloop, one keep-alive connection per worker and
the request's bytes built once: it spends its CPU on almost nothing but the sockets. It reads
Content-Length and chunked answers; for an SSE answer it also notes when the first non-empty
content token arrived. A non-200 answer, or one without the `expect`ed text, fails the run:
a benchmark must not time errors.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from bench.aio import run_fast

__all__ = ["LoadJob", "LoadResult", "run_load"]


class LoadJob(BaseModel):
    url: str
    body: dict[str, Any]
    requests: int
    concurrency: int
    warmup_per_worker: int = 2
    expect: str | None = None


class LoadResult(BaseModel):
    latencies_ms: list[float]
    first_token_ms: list[float] = []
    wall_s: float
    requests: int
    concurrency: int
    served: int  # every request sent, the warm-up's included: what the servers' CPU time was spent on
    cpu_s: float  # the load generator's own CPU while timing: evidence it was not the bottleneck

    @property
    def req_per_s(self) -> float:
        return len(self.latencies_ms) / self.wall_s


class LoadError(RuntimeError):
    """The measured server answered something other than a successful, expected answer."""


def run_load(
    url: str,
    body: dict[str, Any],
    *,
    requests: int,
    concurrency: int,
    expect: str | None = None,
    warmup_per_worker: int = 2,
    timeout_s: float = 300,
) -> LoadResult:
    """Run one bounded load in a child process and return what it measured."""
    job = LoadJob(
        url=url,
        body=body,
        requests=requests,
        concurrency=concurrency,
        expect=expect,
        warmup_per_worker=warmup_per_worker,
    )
    done = subprocess.run(
        [sys.executable, "-m", "bench.load"],
        input=job.model_dump_json().encode(),
        capture_output=True,
        timeout=timeout_s,
        check=False,
    )
    if done.returncode != 0:
        raise LoadError(f"load generator failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return LoadResult.model_validate_json(done.stdout)


# -- the child process ------------------------------------------------------------------------------


@dataclass
class _Answer:
    status: int
    body: bytes
    first_token_s: float | None
    keep_alive: bool


@dataclass
class _Client:
    host: str
    port: int
    request: bytes
    expect: bytes | None
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    latencies: list[float] = field(default_factory=list)
    first_tokens: list[float] = field(default_factory=list)

    async def call(self, record: bool) -> None:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        started = time.perf_counter()
        self.writer.write(self.request)
        answer = await _read_answer(self.reader, started)
        elapsed = time.perf_counter() - started
        if answer.status != 200:
            raise LoadError(f"HTTP {answer.status}: {answer.body[:500]!r}")
        if self.expect is not None and self.expect not in answer.body:
            raise LoadError(f"answer without {self.expect!r}: {answer.body[:500]!r}")
        if not answer.keep_alive:
            await self.close()
        if record:
            self.latencies.append(elapsed * 1000)
            if answer.first_token_s is not None:
                self.first_tokens.append(answer.first_token_s * 1000)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = self.reader = None


async def _read_answer(reader: asyncio.StreamReader, started: float) -> _Answer:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    keep_alive = headers.get("connection") != "close"
    if headers.get("transfer-encoding") == "chunked":
        sse = _FirstToken(started) if headers.get("content-type", "").startswith("text/event-stream") else None
        parts = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            data = await reader.readexactly(size + 2)
            if size == 0:
                break
            parts.append(data[:-2])
            if sse is not None:
                sse.feed(data[:-2])
        return _Answer(status, b"".join(parts), sse.at if sse else None, keep_alive)
    if "content-length" in headers:
        return _Answer(status, await reader.readexactly(int(headers["content-length"])), None, keep_alive)
    return _Answer(status, await reader.read(), None, False)


class _FirstToken:
    """Watches an SSE body for the first chunk whose delta carries non-empty content."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.at: float | None = None
        self.pending = b""

    def feed(self, data: bytes) -> None:
        if self.at is not None:
            return
        self.pending += data
        *events, self.pending = self.pending.split(b"\n\n")
        for event in events:
            if not event.startswith(b"data: {") or b'"content"' not in event:
                continue
            choices = json.loads(event[6:]).get("choices") or [{}]
            if (choices[0].get("delta") or {}).get("content"):
                self.at = time.perf_counter() - self.started
                return


def _request_bytes(job: LoadJob) -> tuple[str, int, bytes]:
    parts = urlsplit(job.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    body = json.dumps(job.body).encode()
    head = (
        f"POST {parts.path or '/'} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"accept: application/json, text/event-stream\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return host, port, head.encode() + body


async def _run(job: LoadJob) -> LoadResult:
    host, port, request = _request_bytes(job)
    expect = job.expect.encode() if job.expect else None
    clients = [_Client(host, port, request, expect) for _ in range(job.concurrency)]
    try:
        # Warm-up: every connection open and every code path taken once before the clock starts.
        async def warm(client: _Client) -> None:
            for _ in range(job.warmup_per_worker):
                await client.call(False)

        await asyncio.gather(*(warm(c) for c in clients))
        remaining = job.requests

        async def worker(client: _Client) -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await client.call(True)

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(c) for c in clients))
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    return LoadResult(
        latencies_ms=[round(x, 3) for c in clients for x in c.latencies],
        first_token_ms=[round(x, 3) for c in clients for x in c.first_tokens],
        wall_s=wall,
        requests=job.requests,
        concurrency=job.concurrency,
        served=job.requests + job.concurrency * job.warmup_per_worker,
        cpu_s=cpu,
    )


def main() -> None:
    job = LoadJob.model_validate_json(sys.stdin.buffer.read())
    result = run_fast(_run(job))
    sys.stdout.write(result.model_dump_json())


if __name__ == "__main__":
    main()
