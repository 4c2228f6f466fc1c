"""Trace events (fusionkit 0.1 compatible; docs/operations.md): JSONL files per trace id and/or an HTTP collector.

    tracer = TraceEmitter.from_env()        # FUSION_TRACE_DIR and/or FUSION_TRACE_URL
    await tracer.start()
    tracer.emit(trace_id=t, span_id=new_span_id(), component="router", event_type="run.state", payload={...})
    await tracer.aclose()

`emit` is synchronous and never waits: it numbers the event, scrubs credentials from its payload
and offers it to one bounded queue per destination; a full queue drops the event and counts it
in `dropped`. One background task per destination drains its queue, so a slow collector never
holds up the files. With neither variable set, `emit` does nothing. A trace file's name comes
from a sanitised trace id, never from a client's raw value. Call `emit` from the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import logging
import os
import random
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge.errors import REDACTED

if TYPE_CHECKING:
    import httpx2

__all__ = [
    "TRACE_SCHEMA",
    "CallSpan",
    "Component",
    "TraceEmitter",
    "TraceEvent",
    "TraceParent",
    "incoming_traceparent",
    "joined_trace",
    "new_span_id",
    "new_trace_id",
    "trace_file_name",
    "traceparent_of",
    "w3c_trace_id",
]

log = logging.getLogger("fusionkit.trace")

TRACE_SCHEMA: Final = "fusion-trace-event.v1"
Component = Literal["router", "panel-model", "judge", "synthesis", "bridge"]

_SAFE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_SECRET_KEYS = frozenset({"authorization", "proxy-authorization", "x-api-key", "x-goog-api-key", "api-key", "api_key"})
_BATCH = 256
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


# Trace and span ids are labels, not secrets: drawn as OpenTelemetry's SDK draws them (`random`), not
# from `secrets`, whose system call per id was a measurable share of the router's CPU per request.
def new_trace_id() -> str:
    return f"{random.getrandbits(128) or 1:032x}"  # all zeros is W3C's invalid id


def new_span_id() -> str:
    return f"{random.getrandbits(64) or 1:016x}"


# -- W3C trace context (`traceparent`): the same ids, in the form OpenTelemetry and every vendor read -------

_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16

# The `traceparent` header of the request being served, set by the access-log middleware, so a run started
# deep in a handler joins its client's trace without every handler passing the header down.
incoming_traceparent: contextvars.ContextVar[str | None] = contextvars.ContextVar("incoming_traceparent", default=None)


def w3c_trace_id(trace_id: str) -> str:
    """The W3C trace id of a fusion trace id: the id itself when it is one (ours are), else one derived from it."""
    if _HEX32.fullmatch(trace_id) and trace_id != _ZERO_TRACE:
        return trace_id
    return hashlib.sha256(trace_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def traceparent_of(trace_id: str | None, span_id: str | None, *, sampled: bool = True) -> str | None:
    """`traceparent` for a call made in span `span_id` of trace `trace_id`; None unless the span id is W3C's."""
    if not trace_id or not span_id or not _HEX16.fullmatch(span_id) or span_id == _ZERO_SPAN:
        return None
    return f"00-{w3c_trace_id(trace_id)}-{span_id}-{'01' if sampled else '00'}"


def joined_trace(trace_id: str) -> TraceParent | None:
    """The client's `traceparent` for the request being served, when it names trace `trace_id` (the run
    joined the client's trace); None when there is none or the run's trace is another."""
    parent = TraceParent.parse(incoming_traceparent.get())
    return parent if parent is not None and parent.trace_id == w3c_trace_id(trace_id) else None


@dataclass(frozen=True)
class TraceParent:
    """A parsed W3C `traceparent` header: the caller's trace, the caller's span, and whether it is sampled."""

    trace_id: str
    span_id: str
    sampled: bool

    @classmethod
    def parse(cls, header: str | None) -> TraceParent | None:
        """The header's ids, or None for anything malformed (W3C: an invalid traceparent is ignored)."""
        text = header.strip() if header else ""
        match = _TRACEPARENT.fullmatch(text)
        if match is None:
            return None
        version, trace_id, span_id, flags = match.groups()
        if version == "ff" or (version == "00" and len(text) != 55):
            return None
        if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
            return None
        return cls(trace_id, span_id, bool(int(flags, 16) & 1))

    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"


class TraceEvent(BaseModel):
    """One fusion-trace-event.v1 event, as written to a JSONL line or POSTed to the collector."""

    # `schema` would shadow a BaseModel attribute; the wire name comes from the alias.
    schema_: Literal["fusion-trace-event.v1"] = Field(default=TRACE_SCHEMA, alias="schema")
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

    model_config = ConfigDict(populate_by_name=True)


def trace_file_name(trace_id: str) -> str:
    """The JSONL file name for a trace: the id itself when it is plainly safe, else a hash of it.

    Hashed names contain dots, which safe ids cannot, so two different ids never share a file.
    """
    if _SAFE_ID.fullmatch(trace_id):
        return f"{trace_id}.jsonl"
    return f"sha256.{hashlib.sha256(trace_id.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}.jsonl"


def _scrub(value: Any) -> Any:
    """Payloads come from callers; credentials must not leave the process even if a header dict slips in."""
    if isinstance(value, dict):
        return {k: (REDACTED if str(k).lower() in _SECRET_KEYS else _scrub(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


@dataclass(frozen=True)
class _Line:
    trace_id: str
    text: str


Deliver = Callable[[list[_Line]], Awaitable[int]]


class _Channel:
    """One destination: a bounded queue and the task that drains it in batches; `deliver` returns how many it lost."""

    def __init__(self, name: str, deliver: Deliver, size: int) -> None:
        self.name = name
        self.queue: asyncio.Queue[_Line] = asyncio.Queue(size)
        self._deliver = deliver
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self.lost = 0

    def offer(self, line: _Line) -> bool:
        try:
            self.queue.put_nowait(line)
        except asyncio.QueueFull:
            return False
        return True

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._drain(), name=f"fusionkit-trace-{self.name}")

    async def _drain(self) -> None:
        while True:
            batch = [await self.queue.get()]
            while len(batch) < _BATCH and not self.queue.empty():
                batch.append(self.queue.get_nowait())
            self._in_flight = len(batch)
            try:
                self.lost += await self._deliver(batch)
            except Exception:
                # A bug here must not kill the drain: the queue would fill and drop everything after.
                log.exception("trace %s delivery failed", self.name)
                self.lost += len(batch)
            finally:
                for _ in batch:
                    self.queue.task_done()
            self._in_flight = 0

    async def stop(self, flush_s: float) -> int:
        """Deliver what is queued within `flush_s`, then stop; returns how many events were left undelivered."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.queue.join(), timeout=flush_s)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # A batch cut off mid-delivery is counted as lost (a file write may still have landed).
        left = self.queue.qsize() + self._in_flight
        self._in_flight = 0
        while not self.queue.empty():
            self.queue.get_nowait()
            self.queue.task_done()
        return left


def _append_lines(directory: Path, batch: list[_Line]) -> int:
    """Append a batch to its trace files: one write per file, so lines from other processes never interleave."""
    by_file: dict[str, list[str]] = {}
    for line in batch:
        by_file.setdefault(trace_file_name(line.trace_id), []).append(line.text + "\n")
    lost = 0
    for name, lines in by_file.items():
        data = "".join(lines).encode("utf-8")
        try:
            fd = os.open(directory / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | _O_NOFOLLOW, 0o644)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        except OSError as exc:
            log.debug("trace file %s not written: %s", name, exc)
            lost += len(lines)
    return lost


class TraceEmitter:
    """Emits fusion-trace-event.v1 events to JSONL files and/or an HTTP collector without ever blocking a caller.

        tracer = TraceEmitter(directory=".fusionkit/traces")     # or TraceEmitter.from_env()
        await tracer.start()                                     # events emitted earlier wait in the queue
        tracer.emit(trace_id=t, component="judge", event_type="judge.record", payload={...})

    `dropped` counts deliveries that did not happen (queue full, write or POST failed, still queued
    at `aclose`): an event lost by both destinations counts twice. Sequence numbers are per trace id,
    kept for the last `max_traces` traces.
    """

    def __init__(
        self,
        directory: str | Path | None = None,
        url: str | None = None,
        *,
        queue_size: int = 10_000,
        post_timeout_s: float = 5.0,
        max_traces: int = 10_000,
    ) -> None:
        self.directory = Path(directory) if directory else None
        self.url = url or None
        self.post_timeout_s = post_timeout_s
        self._max_traces = max_traces
        self._seq: OrderedDict[str, int] = OrderedDict()
        self._closed = False
        self._dropped = 0
        self._client: httpx2.AsyncClient | None = None
        self._channels: list[_Channel] = []
        if self.directory is not None:
            self._channels.append(_Channel("files", self._write_files, queue_size))
        if self.url is not None:
            self._channels.append(_Channel("http", self._post, queue_size))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TraceEmitter:
        env = os.environ if environ is None else environ
        return cls(env.get("FUSION_TRACE_DIR") or None, env.get("FUSION_TRACE_URL") or None)

    @property
    def enabled(self) -> bool:
        return bool(self._channels)

    @property
    def dropped(self) -> int:
        return self._dropped + sum(c.lost for c in self._channels)

    async def start(self) -> None:
        """Start draining (idempotent). A trace directory that cannot be made is reported, not fatal."""
        if not self._channels or self._closed:
            return
        if self.directory is not None:
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                log.warning(
                    "trace directory %s cannot be created (%s); its events will be dropped", self.directory, exc
                )
        if self.url is not None and self._client is None:
            import httpx2  # only a process that posts traces pays for the import

            self._client = httpx2.AsyncClient(timeout=self.post_timeout_s)
        for channel in self._channels:
            channel.start()

    def emit(
        self,
        *,
        trace_id: str,
        component: Component,
        event_type: str,
        span_id: str | None = None,
        parent_span_id: str | None = None,
        candidate_id: str | None = None,
        model_id: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Number and queue one event; never raises, never waits."""
        if not self._channels:
            return
        if self._closed:
            self._dropped += 1
            return
        seq = self._seq.get(trace_id, 0) + 1
        try:
            event = TraceEvent(
                trace_id=trace_id,
                span_id=span_id or new_span_id(),
                parent_span_id=parent_span_id,
                seq=seq,
                ts=datetime.now(UTC).isoformat(timespec="milliseconds"),
                component=component,
                event_type=event_type,
                candidate_id=candidate_id,
                model_id=model_id,
                payload=_scrub(payload or {}),
            )
            # ASCII-escaped: a lone surrogate from a client's text must not break the file write or the POST.
            text = json.dumps(event.model_dump(by_alias=True), default=str)
        except (ValidationError, TypeError, ValueError) as exc:
            # A malformed event is the caller's bug, but tracing must never fail the request it describes.
            log.warning("trace event %s dropped: %s", event_type, exc)
            self._dropped += 1
            return
        self._remember(trace_id, seq)
        line = _Line(trace_id, text)
        for channel in self._channels:
            if not channel.offer(line):
                self._dropped += 1

    def _remember(self, trace_id: str, seq: int) -> None:
        # Bounded, least recently used first out: a server sees a new trace id per request.
        self._seq.pop(trace_id, None)
        self._seq[trace_id] = seq
        if len(self._seq) > self._max_traces:
            self._seq.popitem(last=False)

    async def _write_files(self, batch: list[_Line]) -> int:
        assert self.directory is not None
        # A thread, so a slow disk stalls the trace files, not the requests.
        return await asyncio.to_thread(_append_lines, self.directory, batch)

    async def _post(self, batch: list[_Line]) -> int:
        assert self._client is not None and self.url is not None
        lost = 0
        for line in batch:
            try:
                response = await self._client.post(
                    self.url, content=line.text.encode("utf-8"), headers={"content-type": "application/json"}
                )
                if response.status_code >= 300:
                    log.debug("trace collector answered %s", response.status_code)
                    lost += 1
            except Exception as exc:  # any transport failure: the collector is best effort
                log.debug("trace event not posted: %s", exc)
                lost += 1
        return lost

    async def aclose(self, flush_s: float = 2.0) -> None:
        """Deliver what is queued (within `flush_s` per destination), then stop; later events are dropped."""
        if self._closed:
            return
        self._closed = True
        for channel in self._channels:
            self._dropped += await channel.stop(flush_s)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self.dropped:
            log.warning("%d trace events were dropped", self.dropped)


class CallSpan:
    """One model call as trace events: `model.call.started` at once, `model.call.finished` when it ends.

        span = CallSpan(tracer, trace_id=t, parent_span_id=callers_span, component="bridge", model_id="fast")
        span.start({"provider": "openai", "model": "gpt-x"})
        span.finish(latency_ms=812.0, finish_reason="stop", tool_call_count=0, usage={...})   # or error=...

    Both events share one span id (`span.span_id`), so whatever the call leads to downstream can name
    it as its parent; the names and payload keys are fusionkit 0.1's. A disabled tracer makes it free.
    """

    def __init__(
        self,
        tracer: TraceEmitter,
        *,
        trace_id: str | None,
        parent_span_id: str | None,
        component: Component,
        model_id: str | None,
        candidate_id: str | None = None,
        span_id: str | None = None,
    ) -> None:
        self.tracer = tracer
        self.trace_id = trace_id
        self.parent_span_id = parent_span_id
        self.component: Component = component
        self.model_id = model_id
        self.candidate_id = candidate_id
        self.span_id = span_id or new_span_id()
        self._base: dict[str, Any] = {}

    @property
    def on(self) -> bool:
        return self.trace_id is not None and self.tracer.enabled

    def start(self, payload: dict[str, Any]) -> None:
        self._base = payload
        self._emit("model.call.started", payload)

    def finish(self, **outcome: Any) -> None:
        """`outcome`: latency_ms, finish_reason, tool_call_count, usage, or error (and status) when it failed."""
        self._emit("model.call.finished", {**self._base, **{k: v for k, v in outcome.items() if v is not None}})

    def _emit(self, event_type: str, payload: dict[str, Any]) -> None:
        if not self.on:
            return
        assert self.trace_id is not None
        self.tracer.emit(
            trace_id=self.trace_id,
            span_id=self.span_id,
            parent_span_id=self.parent_span_id,
            component=self.component,
            event_type=event_type,
            candidate_id=self.candidate_id,
            model_id=self.model_id,
            payload=payload,
        )
