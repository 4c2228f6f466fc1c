"""`POST /v1/chat/completions` on the router: an OpenAI request in, a fused chat.completion out.

The handler resolves the mode, starts a recorded run and either waits for the engine's result
or streams it: SSE keep-alive comments while the panel and judge work, then the synthesizer's
tokens as they arrive, then a last chunk that carries the `fusionkit` metadata.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from bridge.errors import APIError, bad_request, not_found, upstream_failure
from bridge.http import SSE_HEADERS, log_context, race_disconnect, sse_comment, sse_data
from bridge.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCallDelta,
    ToolCallDelta,
    chunk_to_dict,
    new_completion_id,
)
from server.engine import EngineEvent, FusionEngine, FusionResult, Phase, TextDelta
from server.protocol import FUSION_MODELS, FusionChatRequest, FusionOptions
from server.runs import RunService

__all__ = ["ChatHandler"]

KEEPALIVE_S = 2.0


class ChatHandler:
    def __init__(self, engine: FusionEngine, runs: RunService, *, keepalive_s: float = KEEPALIVE_S) -> None:
        self.engine = engine
        self.runs = runs
        self.keepalive_s = keepalive_s

    def resolve(self, body: FusionChatRequest) -> FusionOptions:
        """The run's options: `fusion.mode`, else the model suffix; an endpoint id means single on it."""
        if body.n not in (None, 1):
            raise bad_request("'n' must be 1: a fused run returns one answer", param="n", code="unsupported_n")
        options = body.fusion or FusionOptions()
        if body.model in FUSION_MODELS:
            if options.mode is None and body.model != "fusionkit/router":
                options = options.model_copy(update={"mode": body.model.removeprefix("fusionkit/")})
            return options
        if body.model in self.engine.clients:
            return options.model_copy(update={"mode": "single", "panel_models": [body.model]})
        allowed = ", ".join([*FUSION_MODELS, *self.engine.clients])
        raise not_found(f"model '{body.model}' does not exist here; allowed: {allowed}")

    async def __call__(self, request: Request, body: FusionChatRequest) -> Response:
        options = self.resolve(body)
        chat = body.chat_request()
        self.engine.check(chat, options)
        recorder = await self.runs.start(
            mode=options.mode or self.engine.config.default_mode,
            request=body.model_dump(exclude_none=True),
            trace_id=request.headers.get("x-fusion-trace-id"),
        )
        log_context(request).update({"run_id": recorder.run_id, "model": body.model})
        headers = {"x-fusion-run-id": recorder.run_id, "x-fusion-trace-id": recorder.trace_id}
        if not body.stream:
            result = await race_disconnect(request, self.runs.launch(self.engine, recorder, chat, options))
            completion = ChatCompletion(
                model=body.model,
                choices=[Choice(message=result.message, finish_reason=result.finish_reason)],
                usage=result.usage,
            )
            data = completion.model_dump(exclude_none=True)
            data["fusionkit"] = result.metadata.model_dump()
            return JSONResponse(data, headers=headers)
        return await self._stream(body, options, recorder, headers)

    async def _stream(
        self, body: FusionChatRequest, options: FusionOptions, recorder: Any, headers: dict[str, str]
    ) -> Response:
        events: asyncio.Queue[EngineEvent | FusionResult | BaseException] = asyncio.Queue()

        async def emit(event: EngineEvent) -> None:
            await events.put(event)

        task = self.runs.launch(self.engine, recorder, body.chat_request(), options, emit)
        task.add_done_callback(lambda t: None if t.cancelled() else events.put_nowait(t.exception() or t.result()))
        # Errors found before the run starts (bad panel names, budgets) are still plain HTTP errors.
        first = await events.get()
        if isinstance(first, BaseException):
            raise first if isinstance(first, APIError) else upstream_failure("the run failed")
        completion_id, model = new_completion_id(), body.model

        def chunk(**fields: Any) -> ChatCompletionChunk:
            return ChatCompletionChunk(id=completion_id, model=model, **fields)

        async def frames() -> AsyncIterator[bytes]:
            try:
                yield sse_data(chunk_to_dict(chunk(choices=[ChunkChoice(delta=Delta(role="assistant", content=""))])))
                pending: EngineEvent | FusionResult | BaseException | None = first
                while True:
                    if pending is None:
                        try:
                            pending = await asyncio.wait_for(events.get(), timeout=self.keepalive_s)
                        except TimeoutError:
                            yield sse_comment()
                            continue
                    item, pending = pending, None
                    if isinstance(item, Phase):
                        yield sse_comment(item.name)
                    elif isinstance(item, TextDelta):
                        yield sse_data(chunk_to_dict(chunk(choices=[ChunkChoice(delta=Delta(content=item.text))])))
                    elif isinstance(item, BaseException):
                        error = item if isinstance(item, APIError) else upstream_failure("the run failed")
                        yield sse_data(error.body())
                        return
                    else:
                        for frame in self._final_frames(item, chunk, body.wants_usage_chunk):
                            yield frame
                        return
            finally:
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

        return StreamingResponse(frames(), media_type="text/event-stream", headers={**SSE_HEADERS, **headers})

    @staticmethod
    def _final_frames(result: FusionResult, chunk: Any, include_usage: bool) -> list[bytes]:
        frames = []
        for index, call in enumerate(result.message.tool_calls or []):
            head = ToolCallDelta(
                index=index,
                id=call.id,
                type="function",
                function=FunctionCallDelta(name=call.function.name, arguments=""),
            )
            args = ToolCallDelta(index=index, function=FunctionCallDelta(arguments=call.function.arguments))
            for delta in (head, args):
                frames.append(sse_data(chunk_to_dict(chunk(choices=[ChunkChoice(delta=Delta(tool_calls=[delta]))]))))
        last = chunk(choices=[ChunkChoice(finish_reason=result.finish_reason)])
        frames.append(sse_data(chunk_to_dict(last, extra={"fusionkit": result.metadata.model_dump()})))
        if include_usage:
            frames.append(sse_data(chunk_to_dict(chunk(choices=[], usage=result.usage))))
        frames.append(sse_data("[DONE]"))
        return frames
