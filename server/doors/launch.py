"""The one fusion path behind every front door (Chat Completions, Responses, Messages).

    fusion = FusionPath(engine, runs, keepalive_s=2.0)
    options = fusion.options(body.model, body.fusion)           # the mode, from `fusion` or the model name
    run = await fusion.start(request, door="messages", model=body.model, chat=chat, options=options,
                             record=body_as_received)
    result = await run.result(request)                          # non-streaming: cancelled if the client leaves
    return stream_response(await run.events(), writer, run.headers)   # streaming, in the door's own frames

A door translates its wire request into the engine's (`ChatRequest` + `FusionOptions`) and the
engine's result and events back into its own wire format (a `StreamWriter`); starting and
recording the run, following its events, keep-alives and cancelling it when the client goes are
done here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

from fastapi import Request
from fastapi.responses import StreamingResponse

from bridge.errors import APIError, bad_request, conflict, not_found, upstream_failure
from bridge.http import SSE_HEADERS, ClientDisconnected, log_context, race_disconnect
from bridge.protocol import ChatRequest
from server.engine import Emit, EngineEvent, FusionEngine, FusionResult, Paused, Phase, Reasoning, TextDelta
from server.protocol import FUSION_MODELS, mode_of_model
from server.protocol.chat import FusionOptions
from server.run_views import DOOR_EVENT
from server.runs import RunRecorder, RunService

__all__ = [
    "FusionPath",
    "KeepAlive",
    "RunEvents",
    "RunItem",
    "Start",
    "StartedRun",
    "StreamWriter",
    "run_cancelled",
    "stream_response",
]

Start = Callable[[Emit | None], "asyncio.Task[FusionResult]"]


@dataclass(frozen=True)
class KeepAlive:
    """Nothing happened for `keepalive_s`: the door sends its own keep-alive frame."""


RunItem = Phase | TextDelta | Reasoning | Paused | KeepAlive | FusionResult


class RunEvents:
    """A launched run as an async stream: the engine's events, keep-alives while it is quiet, the result last.

    `open` waits for the first event, so a run that fails before it started (unknown panel
    members, budgets) raises its error while the door can still answer with a plain HTTP error.
    After that, iterating raises the run's error where it happens. Leaving the `async with`
    block (stream finished, client gone, error) cancels a run that is still going.
    """

    def __init__(
        self, task: asyncio.Task[FusionResult], queue: asyncio.Queue[Any], keepalive_s: float, run_id: str
    ) -> None:
        self._task = task
        self._queue = queue
        self._keepalive_s = keepalive_s
        self._run_id = run_id
        self._pending: Any = None
        self._paused = False

    @classmethod
    async def open(cls, start: Start, *, keepalive_s: float, run_id: str) -> RunEvents:
        queue: asyncio.Queue[EngineEvent | FusionResult | BaseException] = asyncio.Queue()
        task = start(queue.put)
        task.add_done_callback(lambda t: queue.put_nowait(_outcome(t)))
        events = cls(task, queue, keepalive_s, run_id)
        first = await queue.get()
        if isinstance(first, BaseException):
            raise run_failure(first, run_id)
        events._pending = first
        return events

    @property
    def run_id(self) -> str:
        return self._run_id

    async def __aenter__(self) -> RunEvents:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        # A run that settled waiting for tool results goes on: its caller submits them to the runs API.
        if not self._task.done() and not self._paused:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def __aiter__(self) -> AsyncIterator[RunItem]:
        return self._items()

    async def _items(self) -> AsyncIterator[RunItem]:
        while True:
            item, self._pending = self._pending, None
            if item is None:
                try:
                    item = await asyncio.wait_for(self._queue.get(), timeout=self._keepalive_s)
                except TimeoutError:
                    yield KeepAlive()
                    continue
            if isinstance(item, BaseException):
                raise run_failure(item, self._run_id)
            yield item
            if isinstance(item, Paused):
                self._paused = True
            if isinstance(item, FusionResult | Paused):
                return


def run_failure(exc: BaseException, run_id: str) -> APIError:
    """What the client sees of a run that failed: its error (or a 502 for a bug, logged by the run) naming the run."""
    error = exc if isinstance(exc, APIError) else upstream_failure("the run failed; see the router's log")
    error.run_id = run_id
    return error


def run_cancelled() -> APIError:
    """409 `run_cancelled`: the run was cancelled (POST .../cancel) while its request waited.

    The SDKs retry a 409, and a retry would start the run again, which whoever cancelled it did not
    ask for: the answer says not to (`x-should-retry: false`).
    """
    error = conflict("the run was cancelled", code="run_cancelled")
    error.retryable = False
    return error


def _outcome(task: asyncio.Task[FusionResult]) -> FusionResult | BaseException:
    # A run cancelled from elsewhere (POST .../cancel) ends the stream with an error instead of keep-alives forever.
    if task.cancelled():
        return run_cancelled()
    return task.exception() or task.result()


class StreamWriter(Protocol):
    """A door's wire format for a streamed answer: the frames for each thing that happens in a run."""

    def opening(self) -> list[bytes]: ...

    def keepalive(self) -> list[bytes]: ...

    def phase(self, name: str) -> list[bytes]: ...

    def reasoning(self, piece: Reasoning) -> list[bytes]:
        """What the run is doing and why (`fusion.show_reasoning`), sent by the engine before the answer begins."""
        ...

    def delta(self, piece: TextDelta) -> list[bytes]: ...

    def finish(self, result: FusionResult) -> list[bytes]: ...

    def paused(self, pause: Paused) -> list[bytes]: ...

    def failed(self, error: APIError) -> list[bytes]: ...


def stream_response(events: RunEvents, writer: StreamWriter, headers: dict[str, str]) -> StreamingResponse:
    """The run as an SSE response in `writer`'s frames; an error after the stream began is a frame too."""

    async def frames() -> AsyncIterator[bytes]:
        async with events:
            for frame in writer.opening():
                yield frame
            try:
                async for item in events:
                    if isinstance(item, KeepAlive):
                        written = writer.keepalive()
                    elif isinstance(item, Phase):
                        written = writer.phase(item.name)
                    elif isinstance(item, Reasoning):
                        written = writer.reasoning(item)
                    elif isinstance(item, TextDelta):
                        written = writer.delta(item)
                    elif isinstance(item, Paused):
                        written = writer.paused(item)
                    else:
                        written = writer.finish(item)
                    for frame in written:
                        yield frame
            except APIError as error:
                for frame in writer.failed(error):
                    yield frame
            except Exception:
                # A bug of ours (a writer's, say): the client still gets an end it recognises as a failure.
                logging.getLogger("fusionkit").exception("stream failed")
                bug = APIError(
                    500, "the answer could not be sent; see the router log", type="server_error", code="internal_error"
                )
                bug.run_id = events.run_id
                for frame in writer.failed(bug):
                    yield frame

    return StreamingResponse(frames(), media_type="text/event-stream", headers={**SSE_HEADERS, **headers})


@dataclass
class StartedRun:
    """A recorded run a door has started: its recorder, the headers that name it, and how to launch it."""

    recorder: RunRecorder
    launch: Start
    runs: RunService
    keepalive_s: float
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, runs: RunService, recorder: RunRecorder, launch: Start, *, keepalive_s: float) -> StartedRun:
        headers = {"x-fusion-run-id": recorder.run_id, "x-fusion-trace-id": recorder.trace_id}
        return cls(recorder=recorder, launch=launch, runs=runs, keepalive_s=keepalive_s, headers=headers)

    async def settle(self, request: Request) -> FusionResult | Paused:
        """Run until it ends or settles waiting for external tool results (then it goes on, and the calls
        it waits on are returned); a client that goes away first cancels the run."""
        task = self.launch(None)
        run_id = self.recorder.run_id
        try:
            settled = await race_disconnect(request, self.runs.wait_settled(run_id))
        except ClientDisconnected:
            task.cancel()
            raise
        if settled == "paused":
            return Paused(self.runs.pending_calls(run_id))
        return await self._answer(task, task)

    async def result(self, request: Request) -> FusionResult:
        """Run to the end; a client that goes away cancels the run (and its upstream calls)."""
        task = self.launch(None)
        return await self._answer(task, race_disconnect(request, task))

    async def _answer(self, task: asyncio.Task[FusionResult], waiting: Awaitable[FusionResult]) -> FusionResult:
        """What `waiting` (on the run's `task`) gives: its result, or the run's failure as the door's error."""
        try:
            return await waiting
        except ClientDisconnected:
            raise  # the client left: no failure of the run (not the 502 below)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not task.cancelled() or (current is not None and current.cancelling()):
                raise  # this request is being cancelled (the server stops): not the run's failure
            # Cancelled from elsewhere (POST .../cancel) while the request waited.
            raise run_failure(run_cancelled(), self.recorder.run_id) from None
        except Exception as exc:
            raise run_failure(exc, self.recorder.run_id) from None

    async def events(self) -> RunEvents:
        return await RunEvents.open(self.launch, keepalive_s=self.keepalive_s, run_id=self.recorder.run_id)


class FusionPath:
    """Chooses a run's options from the model name and starts recorded runs for the doors."""

    def __init__(self, engine: FusionEngine, runs: RunService, *, keepalive_s: float) -> None:
        self.engine = engine
        self.runs = runs
        self.keepalive_s = keepalive_s

    def options(self, model: str, fusion: FusionOptions | None, *, show_reasoning: bool | None = None) -> FusionOptions:
        """`fusion.mode`, else the model suffix (`fusionkit/panel`, `fusionkit/router`, the 0.10
        alias `fusionkit/heuristic`); an endpoint id means single on it.

        `show_reasoning` is what the door's own request says about seeing reasoning (Messages
        `thinking`, Responses `reasoning.summary`); `fusion.show_reasoning` overrides it, and when
        neither says, the config's `fusion.show_reasoning` decides (at planning).
        """
        options = fusion or FusionOptions()
        if show_reasoning is not None and options.show_reasoning is None:
            options = options.model_copy(update={"show_reasoning": show_reasoning})
        mode = mode_of_model(model)
        if mode is not None:
            return options if options.mode is not None else options.model_copy(update={"mode": mode})
        if model in self.engine.clients:
            return options.model_copy(update={"mode": "single", "panel_models": [model]})
        allowed = ", ".join([*FUSION_MODELS, *self.engine.clients])
        raise not_found(f"model '{model}' does not exist here; allowed: {allowed}")

    async def start(
        self,
        request: Request,
        *,
        door: str,
        model: str,
        chat: ChatRequest,
        options: FusionOptions,
        record: dict[str, Any],
    ) -> StartedRun:
        """Check the run, record it (with the door it came through) and return it ready to launch."""
        external = options.tool_execution is not None and options.tool_execution.mode == "external"
        if external and door != "chat.completions":
            # Agents on these doors run their tools themselves: fused tool calls come back as the answer.
            raise bad_request(
                "fusion.tool_execution external is served by /v1/chat/completions and /v1/fusion/runs",
                param="fusion.tool_execution.mode",
                code="unsupported_parameter",
            )
        plan = self.engine.plan(chat, options)
        recorder = await self.runs.start(
            mode=plan.mode,
            request=record,
            trace_id=request.headers.get("x-fusion-trace-id"),
        )
        await recorder.event(DOOR_EVENT, {"door": door, "path": request.url.path})
        log_context(request).update({"run_id": recorder.run_id, "model": model})
        return StartedRun.of(
            self.runs,
            recorder,
            lambda emit: self.runs.launch(self.engine, recorder, plan, emit),
            keepalive_s=self.keepalive_s,
        )
