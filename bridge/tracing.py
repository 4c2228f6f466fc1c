"""Trace events (SPEC §12, fusionkit 0.1 compatible): JSONL files and/or an HTTP collector.

    tracer = TraceEmitter.from_env()        # FUSION_TRACE_DIR and/or FUSION_TRACE_URL
    await tracer.start()
    tracer.emit(trace_id=t, span_id=s, component="router", event_type="run.state", payload={...})
    await tracer.aclose()

`emit` never blocks a request: events go onto a bounded queue that one background task drains;
when the queue is full the event is dropped and counted. With neither variable set, `emit` is a
no-op. File names come from a sanitised trace id, never from a client's raw value.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import httpx2
from pydantic import BaseModel, Field

__all__ = ["Component", "TraceEmitter", "TraceEvent", "new_span_id", "new_trace_id"]

log = logging.getLogger("fusionkit.trace")
Component = Literal["router", "panel-model", "judge", "synthesis", "bridge"]
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SECRET_KEYS = {"authorization", "x-api-key", "x-goog-api-key", "api-key", "api_key"}


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


class TraceEvent(BaseModel):
    schema_: str = Field(default="fusion-trace-event.v1", alias="schema")
    trace_id: str
    span_id: str
    parent_span_id: str | None = None
    seq: int
    ts: str
    component: Component
    event_type: str
    candidate_id: str | None = None
    model_id: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)

    model_config = {"populate_by_name": True}


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: ("[redacted]" if str(k).lower() in _SECRET_KEYS else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _file_name(trace_id: str) -> str:
    if _SAFE_ID.match(trace_id):
        return f"{trace_id}.jsonl"
    return f"trace-{hashlib.sha256(trace_id.encode()).hexdigest()[:32]}.jsonl"


class TraceEmitter:
    def __init__(self, directory: str | Path | None = None, url: str | None = None, queue_size: int = 10_000) -> None:
        self.directory = Path(directory) if directory else None
        self.url = url
        self.dropped = 0
        self._queue: asyncio.Queue[TraceEvent] | None = None
        self._queue_size = queue_size
        self._task: asyncio.Task[None] | None = None
        self._seq: dict[str, int] = {}

    @classmethod
    def from_env(cls) -> TraceEmitter:
        return cls(os.environ.get("FUSION_TRACE_DIR") or None, os.environ.get("FUSION_TRACE_URL") or None)

    @property
    def enabled(self) -> bool:
        return self.directory is not None or self.url is not None

    async def start(self) -> None:
        if not self.enabled or self._task is not None:
            return
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self._queue = asyncio.Queue(self._queue_size)
        self._task = asyncio.create_task(self._drain())

    def emit(
        self,
        *,
        trace_id: str,
        span_id: str,
        component: Component,
        event_type: str,
        parent_span_id: str | None = None,
        candidate_id: str | None = None,
        model_id: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        if self._queue is None:
            return
        seq = self._seq.get(trace_id, 0) + 1
        self._seq[trace_id] = seq
        event = TraceEvent(
            trace_id=trace_id,
            span_id=span_id,
            parent_span_id=parent_span_id,
            seq=seq,
            ts=datetime.now(UTC).isoformat(timespec="milliseconds"),
            component=component,
            event_type=event_type,
            candidate_id=candidate_id,
            model_id=model_id,
            payload=_scrub(payload or {}),
        )
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1

    async def _drain(self) -> None:
        assert self._queue is not None
        client = httpx2.AsyncClient(timeout=5) if self.url else None
        try:
            while True:
                event = await self._queue.get()
                line = event.model_dump_json(by_alias=True)
                try:
                    if self.directory is not None:
                        with (self.directory / _file_name(event.trace_id)).open("a", encoding="utf-8") as fh:
                            fh.write(line + "\n")
                    if client is not None and self.url is not None:
                        await client.post(self.url, content=line, headers={"content-type": "application/json"})
                except (OSError, httpx2.HTTPError) as exc:
                    self.dropped += 1
                    log.debug("trace event dropped: %s", exc)
                finally:
                    self._queue.task_done()
        finally:
            if client is not None:
                await client.aclose()

    async def aclose(self, flush_s: float = 2.0) -> None:
        if self._task is None or self._queue is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout=flush_s)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self.dropped:
            log.warning("%d trace events were dropped", self.dropped)
