"""A run's task as an OpenAI answer: one chat.completion, or an SSE stream of chunks.

    return await respond(request, model=body.model, stream=body.stream, include_usage=...,
                         start=lambda emit: runs.launch(engine, recorder, chat, options, emit), headers=...)

Streaming sends the role chunk at once, an SSE comment for each phase and as a keep-alive
while nothing else is happening, the answer's tokens as the engine emits them, tool calls at the
end, then the last chunk with `finish_reason` and the `fusionkit` metadata. A client that goes
away cancels the task.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from bridge.adapters.chunks import finish_chunk, text_chunk, tool_arguments_chunk, tool_head_chunk, usage_chunk
from bridge.errors import APIError
from bridge.http import SSE_HEADERS, race_disconnect, sse_comment, sse_data
from bridge.protocol import (
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    chunk_to_dict,
    new_completion_id,
)
from server.doors.launch import KeepAlive, RunEvents, Start
from server.engine import Phase, TextDelta

__all__ = ["respond"]


async def respond(
    request: Request,
    *,
    model: str,
    stream: bool,
    include_usage: bool,
    start: Start,
    headers: dict[str, str],
    keepalive_s: float,
) -> Response:
    if not stream:
        result = await race_disconnect(request, start(None))
        completion = ChatCompletion(
            model=model,
            choices=[Choice(message=result.message, finish_reason=result.finish_reason)],
            usage=result.usage,
        )
        data = completion.model_dump(exclude_none=True)
        data["fusionkit"] = result.metadata.model_dump()
        return JSONResponse(data, headers=headers)

    # A run that fails before its first event (bad panel names, budgets) is still a plain HTTP error.
    events = await RunEvents.open(start, keepalive_s=keepalive_s)
    completion_id = new_completion_id()

    def frame(chunk: ChatCompletionChunk, extra: dict[str, Any] | None = None) -> bytes:
        chunk.id, chunk.model = completion_id, model
        return sse_data(chunk_to_dict(chunk, extra))

    async def frames() -> AsyncIterator[bytes]:
        async with events:
            yield frame(ChatCompletionChunk(choices=[ChunkChoice(delta=Delta(role="assistant", content=""))]))
            try:
                async for item in events:
                    if isinstance(item, KeepAlive):
                        yield sse_comment()
                    elif isinstance(item, Phase):
                        yield sse_comment(item.name)
                    elif isinstance(item, TextDelta):
                        yield frame(text_chunk(item.text))
                    else:
                        for index, call in enumerate(item.message.tool_calls or []):
                            yield frame(tool_head_chunk(index, call.id, call.function.name))
                            yield frame(tool_arguments_chunk(index, call.function.arguments))
                        yield frame(finish_chunk(item.finish_reason), {"fusionkit": item.metadata.model_dump()})
                        if include_usage:
                            yield frame(usage_chunk(item.usage))
                        yield sse_data("[DONE]")
            except APIError as error:
                yield sse_data(error.body())

    return StreamingResponse(frames(), media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
