"""Turning an adapter's raw chunks into a conforming OpenAI stream, and a stream back into a completion."""

from __future__ import annotations

from collections.abc import AsyncIterator

from bridge.errors import stream_cut_short
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
    now,
)

__all__ = ["StreamAccumulator", "normalize_stream"]


async def normalize_stream(
    chunks: AsyncIterator[ChatCompletionChunk], *, completion_id: str, model: str, include_usage: bool
) -> AsyncIterator[ChatCompletionChunk]:
    """Enforce the OpenAI stream rules whatever the adapter did.

    The same id/created/model on every chunk; `role` on the first delta; exactly one
    `finish_reason`, `tool_calls` when the turn called a tool; the usage chunk only when asked
    for, exactly once, last. A stream that ends without a finish reason is an upstream failure.
    """
    created = now()
    usage: Usage | None = None
    saw_tool_call = False
    finished = False
    sent_role = False

    def stamp(chunk: ChatCompletionChunk) -> ChatCompletionChunk:
        chunk.id, chunk.created, chunk.model = completion_id, created, model
        return chunk

    async for chunk in chunks:
        if chunk.usage is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        if finished:
            continue
        if choice.delta.tool_calls:
            saw_tool_call = True
        if choice.finish_reason is not None:
            finished = True
            if saw_tool_call:
                choice.finish_reason = "tool_calls"
        if not sent_role:
            sent_role = True
            choice.delta.role = "assistant"
            if choice.finish_reason is not None:
                # Keep the role frame separate so the finish stays its own delta. No `content: ""`: an empty
                # text delta before a tool call becomes an empty text part in some clients (the AI SDK).
                yield stamp(ChatCompletionChunk(choices=[ChunkChoice(delta=Delta(role="assistant"))]))
                choice.delta.role = None
        if (
            choice.delta.content is None
            and choice.delta.tool_calls is None
            and choice.delta.role is None
            and choice.finish_reason is None
        ):
            continue
        chunk.usage = None
        yield stamp(chunk)
    if not finished:
        raise stream_cut_short()
    if include_usage:
        yield stamp(ChatCompletionChunk(choices=[], usage=usage or Usage()))


class StreamAccumulator:
    """Reassembles streamed deltas (text and tool-call fragments) into one assistant message."""

    def __init__(self) -> None:
        self.text: list[str] = []
        self.calls: dict[int, dict[str, str]] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None

    def add(self, chunk: ChatCompletionChunk) -> str | None:
        """Take one chunk; returns its text delta, if any."""
        if chunk.usage is not None:
            self.usage = chunk.usage
        if not chunk.choices:
            return None
        choice = chunk.choices[0]
        if choice.finish_reason is not None:
            self.finish_reason = choice.finish_reason
        for delta in choice.delta.tool_calls or []:
            call = self.calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            if delta.id:
                call["id"] = delta.id
            if delta.function is not None:
                call["name"] += delta.function.name or ""
                call["arguments"] += delta.function.arguments or ""
        if choice.delta.content:
            self.text.append(choice.delta.content)
            return choice.delta.content
        return None

    def completion(self, *, model: str, completion_id: str | None = None) -> ChatCompletion:
        tool_calls = [
            ToolCall(id=c["id"], function=FunctionCall(name=c["name"], arguments=c["arguments"] or "{}"))
            for _, c in sorted(self.calls.items())
        ]
        message = AssistantMessage(content="".join(self.text) or None, tool_calls=tool_calls or None)
        if message.content is None and not tool_calls:
            message.content = ""
        finish = "tool_calls" if tool_calls else (self.finish_reason or "stop")
        completion = ChatCompletion(
            model=model,
            choices=[Choice(message=message, finish_reason=finish)],
            usage=self.usage or Usage(),
        )
        if completion_id:
            completion.id = completion_id
        return completion
