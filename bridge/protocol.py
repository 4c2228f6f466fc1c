"""OpenAI Chat Completions wire format, as pydantic models.

This module is the one place that knows the shape of the OpenAI API. Both servers (the bridge
and the fusion router) parse requests into these models and answer with them; adapters convert
between these models and their provider's format at the edge and nowhere else.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from bridge.base_models import Open, Probability
from bridge.errors import InvalidParam, bad_request

__all__ = [
    "AssistantMessage",
    "BridgeHealth",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatMessage",
    "ChatRequest",
    "Choice",
    "ChunkChoice",
    "ContentPart",
    "Delta",
    "ErrorDetail",
    "ErrorResponse",
    "FunctionCall",
    "FunctionCallDelta",
    "FunctionDefinition",
    "InvalidParam",
    "ModelCard",
    "ModelList",
    "ResponseFormat",
    "StreamOptions",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "chunk_to_dict",
    "completion_to_dict",
    "message_text",
    "new_completion_id",
    "now",
]

Role = Literal["system", "developer", "user", "assistant", "tool"]
MAX_STOP_SEQUENCES = 4  # as OpenAI
MAX_OUTPUT_TOKENS = 1 << 20  # beyond any model's output; a larger limit is a mistake, refused as OpenAI does
FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


class ContentPart(Open):
    type: str
    text: str | None = None
    image_url: dict[str, Any] | None = None


class FunctionCall(BaseModel):
    name: str
    arguments: str = "{}"


class ToolCall(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(Open):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _check_role_fields(self) -> ChatMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a message with role 'tool' needs 'tool_call_id'")
        if self.role != "assistant" and self.content is None:
            raise ValueError(f"a message with role '{self.role}' needs 'content'")
        if self.role == "assistant" and self.content is None and not self.tool_calls:
            raise ValueError("an assistant message needs 'content' or 'tool_calls'")
        return self


def message_text(message: ChatMessage | AssistantMessage) -> str:
    """The text of a message: the string content, or its text parts joined."""
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(part.text or "" for part in content if part.type == "text")


class FunctionDefinition(Open):
    # OpenAI's rule for function names; providers refuse anything else, so it is checked at the door.
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(Open):
    type: Literal["function"] = "function"
    function: FunctionDefinition


class ToolChoiceFunction(BaseModel):
    name: str


class NamedToolChoice(BaseModel):
    type: Literal["function"] = "function"
    function: ToolChoiceFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class ResponseFormat(Open):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class StreamOptions(Open):
    include_usage: bool = False


class ChatRequest(Open):
    """A Chat Completions request. Fields OpenAI has and we do not model are kept as extras."""

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: Probability | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_TOKENS)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_TOKENS)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = Field(default=None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    user: str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    @model_validator(mode="after")
    def _check_consistency(self) -> ChatRequest:
        if isinstance(self.stop, list) and len(self.stop) > MAX_STOP_SEQUENCES:
            raise InvalidParam("stop", f"'stop' takes at most {MAX_STOP_SEQUENCES} sequences")
        if self.stream_options is not None and not self.stream:
            raise InvalidParam("stream_options", "'stream_options' is only allowed when 'stream' is true")
        if self.tool_choice is not None and self.tool_choice != "none" and not self.tools:
            raise InvalidParam("tool_choice", "'tool_choice' needs 'tools'")
        if isinstance(self.tool_choice, NamedToolChoice):
            names = {tool.function.name for tool in self.tools or []}
            if self.tool_choice.function.name not in names:
                raise InvalidParam(
                    "tool_choice", f"'tool_choice' names undefined tool '{self.tool_choice.function.name}'"
                )
        return self

    def require_one_choice(self) -> None:
        """Both servers answer with one choice; asking for more is refused, never silently ignored."""
        if self.n not in (None, 1):
            raise bad_request(
                "'n' must be 1: this server returns one answer per request", param="n", code="unsupported_n"
            )

    @property
    def token_limit(self) -> int | None:
        """The effective output limit: max_completion_tokens wins over the legacy max_tokens."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    @property
    def wants_usage_chunk(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def upstream_dict(self) -> dict[str, Any]:
        """The request as JSON for an OpenAI-compatible upstream (unset fields left out)."""
        return self.model_dump(exclude_none=True, exclude_unset=True)


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0

    @field_validator("total_tokens", mode="after")
    @classmethod
    def _nonnegative(cls, value: int) -> int:
        return max(value, 0)

    @classmethod
    def of(cls, prompt: int, completion: int) -> Usage:
        return cls(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

    def __add__(self, other: Usage) -> Usage:
        return Usage.of(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason | None = "stop"
    logprobs: dict[str, Any] | None = None


class ChatCompletion(BaseModel):
    id: str = Field(default_factory=new_completion_id)
    object: Literal["chat.completion"] = "chat.completion"
    created: int = Field(default_factory=now)
    model: str
    choices: list[Choice]
    usage: Usage | None = None
    system_fingerprint: str | None = None

    @property
    def message(self) -> AssistantMessage:
        return self.choices[0].message

    @property
    def text(self) -> str:
        return self.choices[0].message.content or ""


class FunctionCallDelta(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(BaseModel):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    # Not in OpenAI's schema: the field DeepSeek, vLLM and OpenRouter stream reasoning in (the router's
    # `fusion.show_reasoning`); the openai SDK keeps it in the delta's `model_extra`.
    reasoning_content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta = Field(default_factory=Delta)
    finish_reason: FinishReason | None = None
    logprobs: dict[str, Any] | None = None


class ChatCompletionChunk(BaseModel):
    id: str = ""
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int = Field(default_factory=now)
    model: str = ""
    choices: list[ChunkChoice] = Field(default_factory=list)
    usage: Usage | None = None


def completion_to_dict(completion: ChatCompletion) -> dict[str, Any]:
    """A completion as OpenAI sends it: unset fields omitted, but every message carries `content`
    (null beside tool calls, as OpenAI sends it), and `logprobs` is there (null unless asked for)."""
    data = completion.model_dump(exclude_none=True)
    for choice, parsed in zip(data["choices"], completion.choices, strict=True):
        choice["message"].setdefault("content", None)
        choice["logprobs"] = parsed.logprobs
    return data


def chunk_to_dict(chunk: ChatCompletionChunk, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """A chunk as OpenAI sends it: unset delta fields omitted, `finish_reason` always present."""
    data = chunk.model_dump(exclude_none=True)
    for choice in data["choices"]:
        choice.setdefault("finish_reason", None)
    if extra:
        data.update(extra)
    return data


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = Field(default_factory=now)
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(Open):
    """OpenAI's error object; the router adds fields beside these (`run_id`, the native API's record)."""

    message: str
    type: str
    param: str | None
    code: str | None


class ErrorResponse(Open):
    """Every error body both servers answer on OpenAI routes: `{"error": {message, type, param, code}}`."""

    error: ErrorDetail


class BridgeHealth(BaseModel):
    """`GET /health` on a bridge: ready, and which model it serves."""

    status: Literal["ok"]
    model: str
    provider: str
    mock: bool
