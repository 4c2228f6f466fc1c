"""Anthropic Messages API wire format (`POST /v1/messages`, `/v1/messages/count_tokens`), as pydantic models.

Requests mirror what the `anthropic` SDK and Claude Code send: `system` as a string or text
blocks, messages whose content is a string or blocks (text, image, tool_use, tool_result with
`is_error`, thinking with a possibly empty `signature`, and any block type newer than this module,
kept as `OtherBlock`), `role: "system"` messages in the middle of the conversation, client tools
(`name`, `description`, `input_schema`) and server tools (kept as `ServerTool`), `thinking`,
`cache_control` anywhere (kept, unused). The answer side is the `message` object and its usage.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag

from bridge.base_models import Open, Probability
from server.protocol import type_tag
from server.protocol.chat import FusionOptions

__all__ = [
    "AnthropicError",
    "Block",
    "CountTokensRequest",
    "ImageBlock",
    "InputMessage",
    "MessageObject",
    "MessageUsage",
    "MessagesRequest",
    "OtherBlock",
    "ServerTool",
    "TextBlock",
    "TextOut",
    "ThinkingBlock",
    "ThinkingConfig",
    "TokenCount",
    "ToolChoice",
    "ToolDefinition",
    "ToolResultBlock",
    "ToolUseBlock",
    "ToolUseOut",
]


class TextBlock(Open):
    type: Literal["text"]
    text: str


class ImageBlock(Open):
    type: Literal["image"]
    source: dict[str, Any]


class OtherBlock(Open):
    """documents, server tool blocks, search results, types newer than this module: not passed on."""

    type: str


_BLOCK_TYPES = {"text", "image", "tool_use", "tool_result", "thinking", "redacted_thinking"}


def _block_tag(value: Any) -> str:
    kind = type_tag(value)
    if kind == "redacted_thinking":
        return "thinking"
    return kind if kind in _BLOCK_TYPES else "other"


ResultContent = Annotated[
    Annotated[TextBlock, Tag("text")] | Annotated[ImageBlock, Tag("image")] | Annotated[OtherBlock, Tag("other")],
    Discriminator(_block_tag),
]


class ToolUseBlock(Open):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any] = Field(default_factory=dict)


class ToolResultBlock(Open):
    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[ResultContent] | None = None
    is_error: bool | None = None


class ThinkingBlock(Open):
    """Earlier thinking sent back; Claude Code sends it with an empty `signature`, which is fine here."""

    type: Literal["thinking", "redacted_thinking"]
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None


Block = Annotated[
    Annotated[TextBlock, Tag("text")]
    | Annotated[ImageBlock, Tag("image")]
    | Annotated[ToolUseBlock, Tag("tool_use")]
    | Annotated[ToolResultBlock, Tag("tool_result")]
    | Annotated[ThinkingBlock, Tag("thinking")]
    | Annotated[OtherBlock, Tag("other")],
    Discriminator(_block_tag),
]


class InputMessage(Open):
    """A turn; `system` turns in the middle of the conversation are what Claude Code sends."""

    role: Literal["user", "assistant", "system"]
    content: str | list[Block]


class ToolDefinition(Open):
    """A client tool: the caller runs it. `type` is absent or `custom`."""

    type: Literal["custom"] | None = None
    name: str = Field(min_length=1)
    description: str | None = None
    input_schema: dict[str, Any]


class ServerTool(Open):
    """A tool Anthropic defines or runs (web_search_*, bash_*, text_editor_*, ...): not offered here."""

    type: str
    name: str | None = None


def _tool_tag(value: Any) -> str:
    raw = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return "client" if raw is None or raw == "custom" else "server"


ToolSpec = Annotated[
    Annotated[ToolDefinition, Tag("client")] | Annotated[ServerTool, Tag("server")], Discriminator(_tool_tag)
]


class ToolChoice(Open):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class ThinkingConfig(Open):
    type: Literal["enabled", "disabled", "adaptive"]
    budget_tokens: int | None = None


class CountTokensRequest(Open):
    model: str = Field(min_length=1)
    messages: list[InputMessage] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None


class MessagesRequest(CountTokensRequest):
    """A Messages API request, plus FusionKit's optional `fusion` object."""

    max_tokens: int = Field(ge=1)
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: Probability | None = None
    top_k: int | None = Field(default=None, ge=0)
    metadata: dict[str, Any] | None = None
    fusion: FusionOptions | None = None


# -- the answer -----------------------------------------------------------------------------------


class TextOut(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ToolUseOut(BaseModel):
    type: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class MessageUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


StopReason = Literal["end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"]


class MessageObject(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[TextOut | ToolUseOut] = Field(default_factory=list)
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: MessageUsage


class TokenCount(BaseModel):
    """`POST /v1/messages/count_tokens`."""

    input_tokens: int


class ErrorObject(BaseModel):
    type: str
    message: str


class AnthropicError(BaseModel):
    """Every error on the Messages routes, so the `anthropic` SDK raises its own exception for it."""

    type: Literal["error"] = "error"
    error: ErrorObject
