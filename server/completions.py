"""A run's task as an OpenAI answer: one chat.completion, or an SSE stream of chunks.

    return await respond(request, model=body.model, stream=body.stream, include_usage=..., run_id=recorder.run_id,
                         start=lambda emit: runs.launch(engine, recorder, chat, options, emit), headers=...)

Streaming sends the role chunk at once, an SSE comment for each phase and as a keep-alive
while nothing else is happening, the answer's tokens as the engine emits them, tool calls at the
end, then the last chunk with `finish_reason` and the `fusionkit` metadata. Every chunk of one
answer carries the same id, created and model. A failure, before or during the stream, names
the run (`error.run_id`), so the client can look it up. A client that goes away cancels the task.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from bridge.adapters.chunks import finish_chunk, text_chunk, tool_arguments_chunk, tool_head_chunk, usage_chunk
from bridge.errors import APIError, upstream_failure
from bridge.http import SSE_HEADERS, ClientDisconnected, race_disconnect, sse_comment, sse_data
from bridge.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    chunk_to_dict,
    completion_to_dict,
    new_completion_id,
)
from server.engine import EngineEvent, FusionResult, Phase, TextDelta

__all__ = ["respond"]

Emit = Callable[[EngineEvent], Awaitable[None]]
Start = Callable[[Emit | None], "asyncio.Task[FusionResult]"]


async def respond(
    request: Request,
    *,
    model: str,
    stream: bool,
    include_usage: bool,
    start: Start,
    run_id: str,
    headers: dict[str, str],
    keepalive_s: float,
) -> Response:
    def failure(exc: BaseException) -> APIError:
        error = exc if isinstance(exc, APIError) else upstream_failure("the run failed; see the router's log")
        error.run_id = run_id
        return error

    if not stream:
        try:
            result = await race_disconnect(request, start(None))
        except ClientDisconnected:
            raise
        except Exception as exc:
            raise failure(exc) from None
        completion = ChatCompletion(
            model=model,
            choices=[Choice(message=result.message, finish_reason=result.finish_reason, logprobs=result.logprobs)],
            usage=result.usage,
        )
        data = completion_to_dict(completion)
        data["fusionkit"] = result.metadata.model_dump()
        return JSONResponse(data, headers=headers)

    events: asyncio.Queue[EngineEvent | FusionResult | BaseException] = asyncio.Queue()
    task = start(events.put)
    task.add_done_callback(lambda t: None if t.cancelled() else events.put_nowait(t.exception() or t.result()))
    # A run that fails before its first event (bad panel names, budgets) is still a plain HTTP error.
    first = await events.get()
    if isinstance(first, BaseException):
        raise failure(first)
    stamp = ChatCompletionChunk(id=new_completion_id(), model=model)

    def frame(chunk: ChatCompletionChunk, extra: dict[str, Any] | None = None) -> bytes:
        chunk.id, chunk.created, chunk.model = stamp.id, stamp.created, stamp.model
        return sse_data(chunk_to_dict(chunk, extra))

    async def frames() -> AsyncIterator[bytes]:
        try:
            # The role alone: whether text or tool calls follow is not known yet, and an empty text
            # delta before a tool call becomes an empty text part in some clients (the AI SDK).
            yield frame(ChatCompletionChunk(choices=[ChunkChoice(delta=Delta(role="assistant"))]))
            pending: EngineEvent | FusionResult | BaseException | None = first
            while True:
                if pending is None:
                    try:
                        pending = await asyncio.wait_for(events.get(), timeout=keepalive_s)
                    except TimeoutError:
                        yield sse_comment()
                        continue
                item, pending = pending, None
                if isinstance(item, Phase):
                    yield sse_comment(item.name)
                elif isinstance(item, TextDelta):
                    chunk = text_chunk(item.text)
                    chunk.choices[0].logprobs = item.logprobs
                    yield frame(chunk)
                elif isinstance(item, BaseException):
                    yield sse_data(failure(item).body())
                    return
                else:
                    for index, call in enumerate(item.message.tool_calls or []):
                        yield frame(tool_head_chunk(index, call.id, call.function.name))
                        yield frame(tool_arguments_chunk(index, call.function.arguments))
                    yield frame(finish_chunk(item.finish_reason), {"fusionkit": item.metadata.model_dump()})
                    if include_usage:
                        yield frame(usage_chunk(item.usage))
                    yield sse_data("[DONE]")
                    return
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return StreamingResponse(frames(), media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
