"""Messages API ⇄ the engine: a `MessagesRequest` as a `ChatRequest`, a `FusionResult` as a `message`.

    chat = to_chat_request(body, notes)
    message = message_object(result, model=body.model, message_id=...)
    stream = MessageStream(message_id, model)        # Anthropic's SSE events
    body = error_body(api_error)                     # {"type": "error", "error": {"type", "message"}}

System text (top level, and `role: "system"` turns where Claude Code puts them) stays system
messages: OpenAI-style members read them in place and the Anthropic and Gemini adapters fold them
into their one system prompt. `tool_result` blocks become tool messages (an `is_error` result
says so in its text); earlier thinking, `thinking` settings and server tools are not passed on,
and `fusionkit.door` says so. Tool call ids go out as `toolu_` ids.
"""

from __future__ import annotations

import json
import re
from typing import Any

from bridge.errors import APIError, bad_request
from bridge.http import sse_event
from bridge.protocol import ChatMessage, ChatRequest, ContentPart, FunctionCall, FunctionDefinition, Tool, ToolCall
from server.doors.notes import DoorNotes
from server.engine import FusionResult, Paused, Reasoning, TextDelta
from server.protocol.messages import (
    CountTokensRequest,
    ImageBlock,
    InputMessage,
    MessageObject,
    MessagesRequest,
    MessageUsage,
    OtherBlock,
    ServerTool,
    TextBlock,
    TextOut,
    ThinkingBlock,
    ToolDefinition,
    ToolResultBlock,
    ToolUseBlock,
    ToolUseOut,
)

__all__ = [
    "STOP_REASONS",
    "MessageStream",
    "asks_for_reasoning",
    "error_body",
    "estimate_tokens",
    "message_object",
    "to_chat_request",
    "tool_use_id",
]

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "content_filter": "refusal"}
# Anthropic names its errors by type; the SDK picks its exception class by status.
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
TOOL_ERROR_MARK = "[the tool reported an error]"


def error_body(error: APIError) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(error.status, "api_error" if error.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def tool_use_id(call_id: str) -> str:
    """A member's call id as Anthropic clients expect one: `toolu_...`, letters, digits, `_` and `-`."""
    if call_id.startswith("toolu_"):
        return call_id
    return "toolu_" + re.sub(r"[^A-Za-z0-9_-]", "_", call_id.removeprefix("call_"))


# -- request ---------------------------------------------------------------------------------------


def _system_text(system: str | list[TextBlock] | None) -> str:
    if system is None or isinstance(system, str):
        return system or ""
    return "\n\n".join(block.text for block in system if block.text)


def _image(block: ImageBlock, notes: DoorNotes) -> ContentPart | None:
    source = block.source
    if source.get("type") == "base64" and source.get("data"):
        url = f"data:{source.get('media_type', 'image/png')};base64,{source['data']}"
    elif source.get("type") == "url" and source.get("url"):
        url = str(source["url"])
    else:
        notes.drop(f"image blocks with source type '{source.get('type')}'")
        return None
    return ContentPart(type="image_url", image_url={"url": url})


def _result_text(block: ToolResultBlock, notes: DoorNotes) -> str:
    if block.content is None:
        text = ""
    elif isinstance(block.content, str):
        text = block.content
    else:
        pieces = []
        for inner in block.content:
            if isinstance(inner, TextBlock):
                pieces.append(inner.text)
            else:
                notes.drop(f"'{inner.type}' blocks inside tool results")
        text = "\n".join(pieces)
    return f"{TOOL_ERROR_MARK}\n{text}" if block.is_error else text


def _turn(message: InputMessage, notes: DoorNotes) -> list[ChatMessage]:
    if isinstance(message.content, str):
        return [ChatMessage(role=message.role, content=message.content)]
    if message.role == "assistant":
        texts: list[str] = []
        calls: list[ToolCall] = []
        for block in message.content:
            if isinstance(block, TextBlock):
                texts.append(block.text)
            elif isinstance(block, ToolUseBlock):
                arguments = json.dumps(block.input)
                calls.append(ToolCall(id=block.id, function=FunctionCall(name=block.name, arguments=arguments)))
            elif isinstance(block, ThinkingBlock):
                notes.drop("thinking blocks of earlier turns: members do not take another model's thinking")
            else:
                notes.drop(f"'{block.type}' blocks")
        return [
            ChatMessage(
                role="assistant", content="".join(texts) if texts or not calls else None, tool_calls=calls or None
            )
        ]
    results: list[ChatMessage] = []
    parts: list[ContentPart] = []
    for block in message.content:
        if isinstance(block, ToolResultBlock):
            results.append(ChatMessage(role="tool", tool_call_id=block.tool_use_id, content=_result_text(block, notes)))
        elif isinstance(block, TextBlock):
            parts.append(ContentPart(type="text", text=block.text))
        elif isinstance(block, ImageBlock):
            image = _image(block, notes)
            if image is not None:
                parts.append(image)
        elif isinstance(block, ThinkingBlock | OtherBlock | ToolUseBlock):
            notes.drop(f"'{block.type}' blocks in {message.role} turns")
    # Chat Completions wants tool results right after the call; the turn's own words follow them.
    if parts or not results:
        if message.role == "system":
            results.append(ChatMessage(role="system", content="".join(p.text or "" for p in parts)))
        else:
            results.append(ChatMessage(role=message.role, content=parts))
    return results


def _conversation(body: CountTokensRequest, notes: DoorNotes) -> list[ChatMessage]:
    system = _system_text(body.system)
    messages = [ChatMessage(role="system", content=system)] if system else []
    for message in body.messages:
        messages.extend(_turn(message, notes))
    return messages


def _tools(body: CountTokensRequest, notes: DoorNotes) -> list[Tool]:
    tools = []
    for spec in body.tools or []:
        if isinstance(spec, ServerTool):
            notes.tools_not_offered.append(spec.name or spec.type)
            continue
        assert isinstance(spec, ToolDefinition)
        tools.append(
            Tool(
                function=FunctionDefinition(name=spec.name, description=spec.description, parameters=spec.input_schema)
            )
        )
    return tools


def to_chat_request(body: MessagesRequest, notes: DoorNotes) -> ChatRequest:
    tools = _tools(body, notes)
    fields: dict[str, Any] = {
        "model": body.model,
        "messages": _conversation(body, notes),
        "max_tokens": body.max_tokens,
        "stream": body.stream,
    }
    if tools:
        fields["tools"] = tools
        choice = body.tool_choice
        if choice is not None:
            if choice.type == "tool":
                if choice.name not in {t.function.name for t in tools}:
                    raise bad_request(
                        f"tool_choice names tool '{choice.name}', which 'tools' does not offer",
                        param="tool_choice.name",
                    )
                fields["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
            else:
                fields["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[choice.type]
            if choice.disable_parallel_tool_use:
                fields["parallel_tool_calls"] = False
    for ours, theirs in (("temperature", body.temperature), ("top_p", body.top_p), ("stop", body.stop_sequences)):
        if theirs is not None:
            fields[ours] = theirs
    if body.thinking is not None and body.thinking.type != "disabled":
        notes.drop(
            "thinking: not passed to panel members (no bridge takes extended thinking); "
            "it shows the run's reasoning as a thinking block"
        )
    if body.top_k is not None:
        notes.drop("top_k: Chat Completions members have no such setting")
    return ChatRequest.model_validate(fields)


def asks_for_reasoning(body: MessagesRequest) -> bool | None:
    """Whether the request's `thinking` asks to see reasoning: `enabled` or `adaptive` asks (a client
    that turns thinking on takes thinking blocks), `disabled` declines, none leaves it to the config."""
    if body.thinking is None:
        return None
    return body.thinking.type != "disabled"


def estimate_tokens(body: CountTokensRequest) -> int:
    """A rough count (about four characters a token, plus a few per message): not any model's tokenizer."""
    notes = DoorNotes(name="count_tokens")
    messages = _conversation(body, notes)
    chars = sum(len(json.dumps(m.content)) for m in messages)
    chars += sum(len(json.dumps(c.function.model_dump())) for m in messages for c in m.tool_calls or [])
    chars += sum(len(json.dumps(t.function.model_dump(exclude_none=True))) for t in _tools(body, notes))
    return max(1, (chars + 3) // 4 + 3 * len(messages))


# -- answer -----------------------------------------------------------------------------------------


def _input_of(arguments: str) -> dict[str, Any]:
    try:
        value = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _usage(result: FusionResult) -> MessageUsage:
    return MessageUsage(input_tokens=result.usage.prompt_tokens, output_tokens=result.usage.completion_tokens)


def message_object(result: FusionResult, *, model: str, message_id: str) -> MessageObject:
    content: list[TextOut | ToolUseOut] = []
    if result.message.content:
        content.append(TextOut(text=result.message.content))
    for call in result.message.tool_calls or []:
        content.append(
            ToolUseOut(id=tool_use_id(call.id), name=call.function.name, input=_input_of(call.function.arguments))
        )
    return MessageObject(
        id=message_id,
        model=model,
        content=content,
        stop_reason=STOP_REASONS.get(result.finish_reason, "end_turn"),
        usage=_usage(result),
    )


class MessageStream:
    """Anthropic's SSE events for one answer: message_start first, content blocks, message_delta, message_stop.

    The run's reasoning, when asked for, is a `thinking` block first, closed when the answer
    begins; the text block opens on the first text delta; tool_use blocks (known when the run
    ends) follow it. `ping` is the keep-alive while the panel and judge work.
    """

    def __init__(self, message_id: str, model: str, notes: DoorNotes) -> None:
        self.message_id = message_id
        self.model = model
        self.notes = notes
        self.index = -1
        self.thinking_open = False
        self.text_open = False
        self.streamed = False

    @staticmethod
    def _event(type: str, **fields: Any) -> bytes:
        return sse_event(type, {"type": type, **fields})

    def opening(self) -> list[bytes]:
        start = MessageObject(id=self.message_id, model=self.model, usage=MessageUsage(input_tokens=0, output_tokens=0))
        return [self._event("message_start", message=start.model_dump()), self.ping()]

    def ping(self) -> bytes:
        return self._event("ping")

    def keepalive(self) -> list[bytes]:
        return [self.ping()]

    def phase(self, name: str) -> list[bytes]:
        return [self.ping()]

    def reasoning(self, piece: Reasoning) -> list[bytes]:
        if self.streamed:
            return []  # the engine reasons before the answer; once it began there is no place for more
        frames = []
        if not self.thinking_open:
            self.index += 1
            self.thinking_open = True
            frames.append(
                self._event("content_block_start", index=self.index, content_block={"type": "thinking", "thinking": ""})
            )
        frames.append(
            self._event(
                "content_block_delta", index=self.index, delta={"type": "thinking_delta", "thinking": piece.text}
            )
        )
        return frames

    def _end_thinking(self) -> list[bytes]:
        """Close the thinking block, once the answer begins (nothing when there is none open).

        Its signature is empty: the text is FusionKit's own account of the run, not a model's
        signed thinking, so nothing could verify a signature, and an empty one tells clients
        (and Anthropic, if a conversation moves there) that the block is unsigned. This door
        drops thinking blocks sent back in later turns, signed or not.
        """
        if not self.thinking_open:
            return []
        self.thinking_open = False
        return [
            self._event("content_block_delta", index=self.index, delta={"type": "signature_delta", "signature": ""}),
            self._event("content_block_stop", index=self.index),
        ]

    def delta(self, piece: TextDelta) -> list[bytes]:
        text = piece.text
        frames = []
        if not self.text_open:
            frames.extend(self._end_thinking())
            self.index += 1
            self.text_open = self.streamed = True
            frames.append(
                self._event("content_block_start", index=self.index, content_block={"type": "text", "text": ""})
            )
        frames.append(self._event("content_block_delta", index=self.index, delta={"type": "text_delta", "text": text}))
        return frames

    def finish(self, result: FusionResult) -> list[bytes]:
        frames = []
        if not self.streamed and result.message.content:
            frames.extend(self.delta(TextDelta(result.message.content)))
        frames.extend(self._end_thinking())  # a turn that is only tool calls
        if self.text_open:
            frames.append(self._event("content_block_stop", index=self.index))
            self.text_open = False
        for call in result.message.tool_calls or []:
            self.index += 1
            block = {"type": "tool_use", "id": tool_use_id(call.id), "name": call.function.name, "input": {}}
            arguments = json.dumps(_input_of(call.function.arguments))
            frames.append(self._event("content_block_start", index=self.index, content_block=block))
            frames.append(
                self._event(
                    "content_block_delta",
                    index=self.index,
                    delta={"type": "input_json_delta", "partial_json": arguments},
                )
            )
            frames.append(self._event("content_block_stop", index=self.index))
        frames.append(
            self._event(
                "message_delta",
                delta={"stop_reason": STOP_REASONS.get(result.finish_reason, "end_turn"), "stop_sequence": None},
                usage=_usage(result).model_dump(),
                fusionkit=self.notes.metadata(result),
            )
        )
        frames.append(self._event("message_stop"))
        return frames

    def paused(self, pause: Paused) -> list[bytes]:
        raise AssertionError("this door refuses external tool execution, so its runs never pause")

    def failed(self, error: APIError) -> list[bytes]:
        return [self._event("error", **{k: v for k, v in error_body(error).items() if k != "type"})]
