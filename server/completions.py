"""A run's task as an OpenAI answer: one chat.completion, or an SSE stream of chunks.

    return await respond(request, model=body.model, stream=body.stream, include_usage=..., run_id=recorder.run_id,
                         start=lambda emit: runs.launch(engine, recorder, plan, emit), headers=...)

Streaming sends the role chunk at once, an SSE comment for each phase and as a keep-alive
while nothing else is happening, the answer's tokens as the engine emits them, tool calls at the
end, then the last chunk with `finish_reason` and the `fusionkit` metadata. Every chunk of one
answer carries the same id, created and model. A failure, before or during the stream, names
the run (`error.run_id`), so the client can look it up. A client that goes away cancels the task.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from bridge.adapters.chunks import finish_chunk, text_chunk, tool_arguments_chunk, tool_head_chunk, usage_chunk
from bridge.errors import APIError
from bridge.http import ClientDisconnected, race_disconnect, sse_comment, sse_data
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
from server.doors.launch import RunEvents, Start, run_failure, stream_response
from server.engine import FusionResult, TextDelta
from server.metadata import fusion_metadata

__all__ = ["respond"]


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
    if not stream:
        try:
            result = await race_disconnect(request, start(None))
        except ClientDisconnected:
            raise
        except Exception as exc:
            raise run_failure(exc, run_id) from None
        completion = ChatCompletion(
            model=model,
            choices=[Choice(message=result.message, finish_reason=result.finish_reason, logprobs=result.logprobs)],
            usage=result.usage,
        )
        data = completion_to_dict(completion)
        data["fusionkit"] = fusion_metadata(result).model_dump()
        return JSONResponse(data, headers=headers)

    # A run that fails before its first event (bad panel names, budgets) is still a plain HTTP error.
    events = await RunEvents.open(start, keepalive_s=keepalive_s, run_id=run_id)
    return stream_response(events, ChunkWriter(model, include_usage=include_usage), headers)


class ChunkWriter:
    """Chat Completions SSE: the role chunk at once, comments as keep-alives and phases, the answer's
    tokens, tool calls at the end, the last chunk with `finish_reason` and the `fusionkit` metadata."""

    def __init__(self, model: str, *, include_usage: bool) -> None:
        self.include_usage = include_usage
        # Every chunk of one answer carries the same id, created and model, as OpenAI's do.
        self.stamp = ChatCompletionChunk(id=new_completion_id(), model=model)

    def _frame(self, chunk: ChatCompletionChunk, extra: dict[str, Any] | None = None) -> bytes:
        chunk.id, chunk.created, chunk.model = self.stamp.id, self.stamp.created, self.stamp.model
        return sse_data(chunk_to_dict(chunk, extra))

    def opening(self) -> list[bytes]:
        # The role alone: whether text or tool calls follow is not known yet, and an empty text delta
        # before a tool call becomes an empty text part in some clients (the AI SDK).
        return [self._frame(ChatCompletionChunk(choices=[ChunkChoice(delta=Delta(role="assistant"))]))]

    def keepalive(self) -> list[bytes]:
        return [sse_comment()]

    def phase(self, name: str) -> list[bytes]:
        return [sse_comment(name)]

    def delta(self, piece: TextDelta) -> list[bytes]:
        chunk = text_chunk(piece.text)
        chunk.choices[0].logprobs = piece.logprobs
        return [self._frame(chunk)]

    def finish(self, result: FusionResult) -> list[bytes]:
        frames = []
        for index, call in enumerate(result.message.tool_calls or []):
            frames.append(self._frame(tool_head_chunk(index, call.id, call.function.name)))
            frames.append(self._frame(tool_arguments_chunk(index, call.function.arguments)))
        frames.append(
            self._frame(finish_chunk(result.finish_reason), {"fusionkit": fusion_metadata(result).model_dump()})
        )
        if self.include_usage:
            frames.append(self._frame(usage_chunk(result.usage)))
        frames.append(sse_data("[DONE]"))
        return frames

    def failed(self, error: APIError) -> list[bytes]:
        return [sse_data(error.body())]
