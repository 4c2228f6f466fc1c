"""Building OpenAI stream chunks, for adapters that translate another provider's stream."""

from __future__ import annotations

from bridge.protocol import ChatCompletionChunk, ChunkChoice, Delta, FunctionCallDelta, ToolCallDelta, Usage

__all__ = ["finish_chunk", "text_chunk", "tool_arguments_chunk", "tool_head_chunk", "usage_chunk"]


def text_chunk(text: str) -> ChatCompletionChunk:
    return ChatCompletionChunk(choices=[ChunkChoice(delta=Delta(content=text))])


def tool_head_chunk(index: int, call_id: str, name: str) -> ChatCompletionChunk:
    """The first delta of a call: index, id, type, name and empty arguments."""
    head = ToolCallDelta(index=index, id=call_id, type="function", function=FunctionCallDelta(name=name, arguments=""))
    return ChatCompletionChunk(choices=[ChunkChoice(delta=Delta(tool_calls=[head]))])


def tool_arguments_chunk(index: int, arguments: str) -> ChatCompletionChunk:
    """A later delta of a call: only its index and a piece of the arguments."""
    part = ToolCallDelta(index=index, function=FunctionCallDelta(arguments=arguments))
    return ChatCompletionChunk(choices=[ChunkChoice(delta=Delta(tool_calls=[part]))])


def finish_chunk(reason: str) -> ChatCompletionChunk:
    return ChatCompletionChunk(choices=[ChunkChoice(finish_reason=reason)])


def usage_chunk(usage: Usage) -> ChatCompletionChunk:
    return ChatCompletionChunk(choices=[], usage=usage)
