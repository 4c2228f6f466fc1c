"""OpenAI Responses API wire format (`POST /v1/responses`), as pydantic models.

Requests mirror what the official SDK, the Agents SDK and Codex CLI send: `input` as a string or
items (messages with `input_text` parts, `function_call` / `function_call_output`,
`custom_tool_call` / `custom_tool_call_output`, `reasoning`, and any item type newer than this
module, kept as `OtherItem`), tools (`function`, `namespace`, `custom`, and hosted tools kept as
`HostedTool`). The answer side is the `response` object and its output items and usage.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Discriminator, Field, Tag, model_validator

from bridge.base_models import Open, Probability
from server.protocol import type_tag
from server.protocol.chat import FusionOptions

__all__ = [
    "CustomTool",
    "CustomToolCallItem",
    "FunctionCallItem",
    "FunctionTool",
    "HostedTool",
    "InputItem",
    "InputPart",
    "MessageItem",
    "NamespaceTool",
    "OtherItem",
    "OutputCustomToolCall",
    "OutputFunctionCall",
    "OutputItem",
    "OutputMessage",
    "OutputReasoning",
    "OutputText",
    "ReasoningItem",
    "ResponseObject",
    "ResponseUsage",
    "ResponsesRequest",
    "SummaryText",
    "TextConfig",
    "TextFormat",
    "ToolCallOutputItem",
    "ToolChoiceObject",
    "ToolSpec",
]


class InputPart(Open):
    """A content part: input_text, output_text, input_image, refusal, input_file, input_audio, ..."""

    type: str
    text: str | None = None
    image_url: str | None = None
    file_id: str | None = None
    detail: str | None = None
    refusal: str | None = None

    @model_validator(mode="after")
    def _check_text(self) -> InputPart:
        if self.type in ("input_text", "output_text") and self.text is None:
            raise ValueError(f"a '{self.type}' part needs 'text'")
        return self


class MessageItem(Open):
    """A message item; `type` may be left out (the SDKs' "easy" input message)."""

    type: Literal["message"] = "message"
    id: str | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputPart]
    status: str | None = None


class FunctionCallItem(Open):
    type: Literal["function_call"]
    id: str | None = None
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    namespace: str | None = None
    status: str | None = None


class CustomToolCallItem(Open):
    type: Literal["custom_tool_call"]
    id: str | None = None
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: str
    namespace: str | None = None


class ToolCallOutputItem(Open):
    """A `function_call_output` or `custom_tool_call_output`: the client's result for a call."""

    type: Literal["function_call_output", "custom_tool_call_output"]
    id: str | None = None
    call_id: str = Field(min_length=1)
    output: str | list[InputPart]


class ReasoningItem(Open):
    type: Literal["reasoning"]
    id: str | None = None
    summary: list[dict[str, Any]] = Field(default_factory=list)
    encrypted_content: str | None = None


class OtherItem(Open):
    """Any other item (hosted tool calls, item references, types newer than this module): not passed on."""

    type: str


_ITEM_TYPES = {
    "message",
    "function_call",
    "custom_tool_call",
    "function_call_output",
    "custom_tool_call_output",
    "reasoning",
}


def _item_tag(value: Any) -> str:
    kind = type_tag(value, "message")
    if kind in ("function_call_output", "custom_tool_call_output"):
        return "tool_output"
    return kind if kind in _ITEM_TYPES else "other"


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[CustomToolCallItem, Tag("custom_tool_call")]
    | Annotated[ToolCallOutputItem, Tag("tool_output")]
    | Annotated[ReasoningItem, Tag("reasoning")]
    | Annotated[OtherItem, Tag("other")],
    Discriminator(_item_tag),
]


class FunctionTool(Open):
    type: Literal["function"]
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class CustomTool(Open):
    """A free-form tool: the model writes one string, optionally following `format` (a grammar)."""

    type: Literal["custom"]
    name: str = Field(min_length=1)
    description: str | None = None
    format: dict[str, Any] | None = None


class NamespaceTool(Open):
    """A group of function (or custom) tools under one name, as Codex sends its sub-agent tools."""

    type: Literal["namespace"]
    name: str = Field(min_length=1)
    description: str | None = None
    tools: list[Annotated[FunctionTool | CustomTool, Discriminator("type")]]


class HostedTool(Open):
    """A tool OpenAI runs itself (web_search, tool_search, file_search, ...): nobody here can run it."""

    type: str


def _tool_tag(value: Any) -> str:
    kind = type_tag(value)
    return kind if kind in ("function", "custom", "namespace") else "hosted"


ToolSpec = Annotated[
    Annotated[FunctionTool, Tag("function")]
    | Annotated[CustomTool, Tag("custom")]
    | Annotated[NamespaceTool, Tag("namespace")]
    | Annotated[HostedTool, Tag("hosted")],
    Discriminator(_tool_tag),
]


class ToolChoiceObject(Open):
    """`{"type": "function", "name": ...}`, `{"type": "custom", ...}`, `{"type": "allowed_tools", ...}`, hosted."""

    type: str
    name: str | None = None
    mode: str | None = None


class TextFormat(Open):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None


class TextConfig(Open):
    format: TextFormat | None = None
    verbosity: str | None = None


class ResponsesRequest(Open):
    """A Responses API request, plus FusionKit's optional `fusion` object."""

    model: str = Field(min_length=1)
    input: str | list[InputItem] | None = None
    instructions: str | None = None
    tools: list[ToolSpec] | None = None
    tool_choice: Literal["none", "auto", "required"] | ToolChoiceObject | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: Probability | None = None
    text: TextConfig | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    stream: bool = False
    previous_response_id: str | None = None
    reasoning: dict[str, Any] | None = None
    include: list[str] | None = None
    user: str | None = None
    fusion: FusionOptions | None = None


# -- the answer -----------------------------------------------------------------------------------


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] = Field(default_factory=list)


class OutputMessage(BaseModel):
    type: Literal["message"] = "message"
    id: str
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    role: Literal["assistant"] = "assistant"
    content: list[OutputText]


class OutputFunctionCall(BaseModel):
    type: Literal["function_call"] = "function_call"
    id: str
    call_id: str
    name: str
    arguments: str
    namespace: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] = "completed"


class OutputCustomToolCall(BaseModel):
    type: Literal["custom_tool_call"] = "custom_tool_call"
    id: str
    call_id: str
    name: str
    input: str
    namespace: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] = "completed"


class SummaryText(BaseModel):
    type: Literal["summary_text"] = "summary_text"
    text: str


class OutputReasoning(BaseModel):
    """A `reasoning` item: what the run did and why, as summary text (`fusion.show_reasoning`). It
    carries no `encrypted_content`: there is no model reasoning to hand back."""

    type: Literal["reasoning"] = "reasoning"
    id: str
    summary: list[SummaryText]


OutputItem = OutputMessage | OutputFunctionCall | OutputCustomToolCall | OutputReasoning


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0
    cache_write_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int


class ResponseObject(BaseModel):
    """The `response` object: what `POST /v1/responses` returns and what the lifecycle events carry."""

    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    error: dict[str, Any] | None = None
    incomplete_details: dict[str, Any] | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    model: str
    output: list[OutputItem] = Field(default_factory=list)
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: dict[str, Any] | None = None
    store: bool = True
    temperature: float | None = None
    text: dict[str, Any] = Field(default_factory=lambda: {"format": {"type": "text"}})
    tool_choice: Any = "auto"
    tools: list[dict[str, Any]] = Field(default_factory=list)
    top_p: float | None = None
    truncation: str = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
