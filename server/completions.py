"""A run's task as an OpenAI answer: one chat.completion, or an SSE stream of chunks.

    run = await fusion.start(request, door="chat.completions", model=..., chat=..., options=..., record=...)
    return await respond(request, run, model=body.model, stream=body.stream, include_usage=...)

Streaming sends the role chunk at once, an SSE comment for each phase and as a keep-alive
while nothing else is happening, the run's reasoning as `reasoning_content` deltas when the
request asked for it (`fusion.show_reasoning`), the answer's tokens as the engine emits them,
tool calls at the end, then the last chunk with `finish_reason` and the `fusionkit` metadata.
Every chunk of one answer carries the same id, created and model. A failure, before or during
the stream, names the run (`error.run_id`), so the client can look it up. A client that goes
away cancels the task.

A run with external tool execution answers as soon as it settles waiting for tool results: a
tool-call turn whose calls are the ones its members wait on, `finish_reason: "tool_calls"`, and a
`fusionkit` object in state `requires_action` that says where to submit the results; the run
goes on once they arrive, and its answer is read from the runs API.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from bridge.adapters.chunks import finish_chunk, text_chunk, tool_arguments_chunk, tool_head_chunk, usage_chunk
from bridge.errors import APIError
from bridge.http import sse_comment, sse_data
from bridge.protocol import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    Choice,
    ChunkChoice,
    Delta,
    FunctionCall,
    ToolCall,
    Usage,
    chunk_to_dict,
    completion_to_dict,
    new_completion_id,
)
from server.doors.launch import StartedRun, stream_response
from server.engine import FusionResult, Paused, Reasoning, TextDelta
from server.metadata import fusion_metadata, paused_metadata

__all__ = ["respond"]


async def respond(request: Request, run: StartedRun, *, model: str, stream: bool, include_usage: bool) -> Response:
    if not stream:
        settled = await run.settle(request)
        if isinstance(settled, Paused):
            data = completion_to_dict(_paused_completion(model, settled))
            data["fusionkit"] = paused_metadata(run.recorder.run_id, run.recorder.trace_id, settled.calls)
            return JSONResponse(data, headers=run.headers)
        completion = ChatCompletion(
            model=model,
            choices=[Choice(message=settled.message, finish_reason=settled.finish_reason, logprobs=settled.logprobs)],
            usage=settled.usage,
        )
        data = completion_to_dict(completion)
        data["fusionkit"] = fusion_metadata(settled).model_dump()
        return JSONResponse(data, headers=run.headers)

    # A run that fails before its first event (bad panel names, budgets) is still a plain HTTP error.
    events = await run.events()
    writer = ChunkWriter(model, include_usage=include_usage, run_id=run.recorder.run_id, trace_id=run.recorder.trace_id)
    return stream_response(events, writer, run.headers)


def _paused_completion(model: str, pause: Paused) -> ChatCompletion:
    """A run waiting for external tool results, as a tool-call turn: the calls its members wait on."""
    calls = [
        ToolCall(id=c["tool_call_id"], function=FunctionCall(name=c["name"], arguments=c["arguments"]))
        for c in pause.calls
    ]
    message = AssistantMessage(content=None, tool_calls=calls)
    return ChatCompletion(model=model, choices=[Choice(message=message, finish_reason="tool_calls")])


class ChunkWriter:
    """Chat Completions SSE: the role chunk at once, comments as keep-alives and phases, the run's
    reasoning as `delta.reasoning_content` (when asked for), the answer's tokens, tool calls at the
    end, the last chunk with `finish_reason` and the `fusionkit` metadata."""

    def __init__(self, model: str, *, include_usage: bool, run_id: str, trace_id: str) -> None:
        self.include_usage = include_usage
        self.run_id, self.trace_id = run_id, trace_id
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

    def reasoning(self, piece: Reasoning) -> list[bytes]:
        return [self._frame(ChatCompletionChunk(choices=[ChunkChoice(delta=Delta(reasoning_content=piece.text))]))]

    def delta(self, piece: TextDelta) -> list[bytes]:
        chunk = text_chunk(piece.text)
        chunk.choices[0].logprobs = piece.logprobs
        return [self._frame(chunk)]

    def _ending(self, message: AssistantMessage, finish_reason: str, fusionkit: Any, usage: Usage) -> list[bytes]:
        """The answer's tool calls, the chunk with `finish_reason` and `fusionkit`, the usage chunk when
        asked for (exactly one, last), then [DONE]."""
        frames = []
        for index, call in enumerate(message.tool_calls or []):
            frames.append(self._frame(tool_head_chunk(index, call.id, call.function.name)))
            frames.append(self._frame(tool_arguments_chunk(index, call.function.arguments)))
        frames.append(self._frame(finish_chunk(finish_reason), {"fusionkit": fusionkit}))
        if self.include_usage:
            frames.append(self._frame(usage_chunk(usage)))
        frames.append(sse_data("[DONE]"))
        return frames

    def finish(self, result: FusionResult) -> list[bytes]:
        metadata = fusion_metadata(result).model_dump()
        return self._ending(result.message, result.finish_reason, metadata, result.usage)

    def paused(self, pause: Paused) -> list[bytes]:
        # The run goes on after the tool results: its usage is counted when it ends (the runs API has it),
        # so this answer's usage chunk carries zeros.
        metadata = paused_metadata(self.run_id, self.trace_id, pause.calls)
        return self._ending(_paused_completion("", pause).choices[0].message, "tool_calls", metadata, Usage())

    def failed(self, error: APIError) -> list[bytes]:
        return [sse_data(error.body())]
