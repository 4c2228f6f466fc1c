"""Responses API ⇄ the engine: a `ResponsesRequest` as a `ChatRequest`, a `FusionResult` as a `response`.

    tools = ToolMap.of(body.tools, notes)           # function, namespace (flattened), custom; hosted left out
    chat = to_chat_request(body, history, tools, notes)
    response = response_object(body, rid, created, output_items(result.message, tools), ...)
    stream = ResponseStream(skeleton, tools)        # the Responses SSE events, numbered

Panel members speak Chat Completions, so every tool becomes a function: a namespace's tools are
offered as `namespace__name` and a custom (free-form) tool as a function with one string argument
`input`; calls come back under the client's own names and kinds. Hosted tools nobody here can
run are not offered, and `fusionkit.door` says so.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from bridge.errors import APIError, bad_request
from bridge.http import sse_comment, sse_event
from bridge.protocol import (
    AssistantMessage,
    ChatMessage,
    ChatRequest,
    ContentPart,
    FunctionCall,
    FunctionDefinition,
    Tool,
    ToolCall,
    Usage,
    now,
)
from server.doors.notes import DoorNotes
from server.engine import FusionResult, Paused, Reasoning, TextDelta
from server.protocol.responses import (
    CustomTool,
    CustomToolCallItem,
    FunctionCallItem,
    FunctionTool,
    HostedTool,
    InputPart,
    MessageItem,
    NamespaceTool,
    OtherItem,
    OutputCustomToolCall,
    OutputFunctionCall,
    OutputItem,
    OutputMessage,
    OutputReasoning,
    OutputText,
    ReasoningItem,
    ResponseObject,
    ResponsesRequest,
    ResponseUsage,
    SummaryText,
    ToolCallOutputItem,
    ToolChoiceObject,
)

__all__ = [
    "OfferedTool",
    "ResponseStream",
    "ToolMap",
    "asks_for_reasoning",
    "finished",
    "flat_name",
    "output_items",
    "response_id_for",
    "response_json",
    "response_skeleton",
    "response_usage",
    "run_id_for",
    "to_chat_request",
]

MAX_TOOL_NAME = 64  # what OpenAI, Anthropic and Gemini all accept


def response_id_for(run_id: str) -> str:
    """A response's id is its run's: `previous_response_id` finds the run without another index."""
    return "resp_" + run_id.removeprefix("run_")


def run_id_for(response_id: str) -> str:
    return "run_" + response_id.removeprefix("resp_")


def _item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def flat_name(name: str, namespace: str | None) -> str:
    """The function name a panel member sees for a tool inside a namespace."""
    if namespace is None:
        return name
    joined = f"{namespace}__{name}"
    if len(joined) <= MAX_TOOL_NAME:
        return joined
    digest = hashlib.sha256(joined.encode()).hexdigest()[:8]
    return f"{joined[: MAX_TOOL_NAME - 9]}_{digest}"


@dataclass(frozen=True)
class OfferedTool:
    """A client tool as the client knows it: its name, its namespace, and whether it is free-form."""

    name: str
    namespace: str | None = None
    custom: bool = False


_CUSTOM_INPUT = "input"


class ToolMap:
    """The client's tools as panel members see them (Chat Completions functions) and the way back."""

    def __init__(self) -> None:
        self.tools: list[Tool] = []
        self.by_flat: dict[str, OfferedTool] = {}

    @classmethod
    def of(cls, specs: list[Any] | None, notes: DoorNotes) -> ToolMap:
        tools = cls()
        for spec in specs or []:
            if isinstance(spec, NamespaceTool):
                for inner in spec.tools:
                    tools._add(inner, spec.name)
            elif isinstance(spec, FunctionTool | CustomTool):
                tools._add(spec, None)
            elif isinstance(spec, HostedTool):
                notes.tools_not_offered.append(spec.type)
        return tools

    def _add(self, spec: FunctionTool | CustomTool, namespace: str | None) -> None:
        name = flat_name(spec.name, namespace)
        if isinstance(spec, CustomTool):
            function = FunctionDefinition(
                name=name,
                description=_custom_description(spec),
                parameters={
                    "type": "object",
                    "properties": {_CUSTOM_INPUT: {"type": "string", "description": "the tool's whole input"}},
                    "required": [_CUSTOM_INPUT],
                    "additionalProperties": False,
                },
            )
        else:
            function = FunctionDefinition(
                name=name, description=spec.description, parameters=spec.parameters, strict=spec.strict
            )
        self.tools.append(Tool(function=function))
        self.by_flat[name] = OfferedTool(spec.name, namespace, isinstance(spec, CustomTool))

    def back(self, call: ToolCall) -> OutputFunctionCall | OutputCustomToolCall:
        """A member's call in the client's terms: its own name, namespace and kind."""
        tool = self.by_flat.get(call.function.name, OfferedTool(call.function.name))
        if tool.custom:
            return OutputCustomToolCall(
                id=_item_id("ctc"),
                call_id=call.id,
                name=tool.name,
                input=_custom_input(call.function.arguments),
                namespace=tool.namespace,
            )
        return OutputFunctionCall(
            id=_item_id("fc"),
            call_id=call.id,
            name=tool.name,
            arguments=call.function.arguments,
            namespace=tool.namespace,
        )


def _custom_description(spec: CustomTool) -> str:
    text = spec.description or ""
    fmt = spec.format or {}
    if fmt.get("type") == "grammar" and fmt.get("definition"):
        text += f"\n\nPut the whole input in `{_CUSTOM_INPUT}`; it must follow this {fmt.get('syntax', '')} grammar:\n"
        text += str(fmt["definition"])
    else:
        text += f"\n\nPut the whole input, as free text, in `{_CUSTOM_INPUT}`."
    return text.strip()


def _custom_input(arguments: str) -> str:
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return arguments
    if isinstance(value, dict) and isinstance(value.get(_CUSTOM_INPUT), str):
        return str(value[_CUSTOM_INPUT])
    return arguments


# -- request ---------------------------------------------------------------------------------------


def _parts(content: str | list[InputPart], notes: DoorNotes, where: str) -> str | list[ContentPart]:
    if isinstance(content, str):
        return content
    parts: list[ContentPart] = []
    for part in content:
        if part.type in ("input_text", "output_text", "text"):
            parts.append(ContentPart(type="text", text=part.text or ""))
        elif part.type == "refusal":
            parts.append(ContentPart(type="text", text=part.refusal or ""))
        elif part.type == "input_image" and part.image_url:
            image: dict[str, Any] = {"url": part.image_url}
            if part.detail:
                image["detail"] = part.detail
            parts.append(ContentPart(type="image_url", image_url=image))
        else:
            notes.drop(f"{where}: '{part.type}' content parts are not passed to panel members")
    return parts


def _text(content: str | list[ContentPart]) -> str:
    if isinstance(content, str):
        return content
    return "".join(p.text or "" for p in content if p.type == "text")


def _add_call(messages: list[ChatMessage], call: ToolCall) -> None:
    """A call joins the assistant message just before it (its text, or earlier calls of the turn), else opens one."""
    last = messages[-1] if messages else None
    if last is not None and last.role == "assistant":
        last.tool_calls = [*(last.tool_calls or []), call]
    else:
        messages.append(ChatMessage(role="assistant", content=None, tool_calls=[call]))


def _conversation(items: list[Any], notes: DoorNotes) -> list[ChatMessage]:
    messages: list[ChatMessage] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if isinstance(item, MessageItem):
            content = _parts(item.content, notes, where)
            if item.role == "assistant":
                messages.append(ChatMessage(role="assistant", content=_text(content)))
            else:
                messages.append(ChatMessage(role=item.role, content=content))
        elif isinstance(item, FunctionCallItem | CustomToolCallItem):
            arguments = (
                item.arguments if isinstance(item, FunctionCallItem) else json.dumps({_CUSTOM_INPUT: item.input})
            )
            call = ToolCall(
                id=item.call_id, function=FunctionCall(name=flat_name(item.name, item.namespace), arguments=arguments)
            )
            _add_call(messages, call)
        elif isinstance(item, ToolCallOutputItem):
            output = item.output if isinstance(item.output, str) else _text(_parts(item.output, notes, where))
            messages.append(ChatMessage(role="tool", tool_call_id=item.call_id, content=output))
        elif isinstance(item, ReasoningItem):
            notes.drop("reasoning items: panel members do not take another model's reasoning")
        elif isinstance(item, OtherItem):
            notes.drop(f"'{item.type}' input items: nothing here can use them")
    return messages


def _tool_choice(choice: str | ToolChoiceObject | None, tools: ToolMap, notes: DoorNotes) -> Any:
    if not tools.tools:
        return None if choice in (None, "none", "auto") or isinstance(choice, ToolChoiceObject) else choice
    if choice is None or isinstance(choice, str):
        return choice
    if choice.type in ("function", "custom") and choice.name:
        name = flat_name(choice.name, choice.model_extra.get("namespace") if choice.model_extra else None)
        if name not in tools.by_flat:
            raise bad_request(
                f"tool_choice names tool '{choice.name}', which 'tools' does not offer", param="tool_choice"
            )
        return {"type": "function", "function": {"name": name}}
    if choice.type == "allowed_tools":
        notes.drop("tool_choice.allowed_tools: the panel is offered every tool; only its mode is kept")
        return "required" if choice.mode == "required" else "auto"
    notes.drop(f"tool_choice '{choice.type}': a hosted tool nobody here can run; the panel chooses")
    return "auto"


def to_chat_request(
    body: ResponsesRequest, history: list[ChatMessage], tools: ToolMap, notes: DoorNotes
) -> tuple[ChatRequest, list[ChatMessage]]:
    """(the engine's request, the conversation without `instructions`, for a later `previous_response_id`)."""
    items = body.input if isinstance(body.input, list) else []
    conversation = [*history]
    if isinstance(body.input, str):
        conversation.append(ChatMessage(role="user", content=body.input))
    conversation.extend(_conversation(items, notes))
    messages = [*([ChatMessage(role="system", content=body.instructions)] if body.instructions else []), *conversation]
    if not messages:
        raise bad_request("the request has no input: give 'input' (or 'previous_response_id')", param="input")
    fields: dict[str, Any] = {
        "model": body.model,
        "messages": messages,
        "stream": body.stream,
        "tools": tools.tools or None,
        "tool_choice": _tool_choice(body.tool_choice, tools, notes),
    }
    for ours, theirs in (
        ("temperature", body.temperature),
        ("top_p", body.top_p),
        ("max_tokens", body.max_output_tokens),
        ("parallel_tool_calls", body.parallel_tool_calls if tools.tools else None),
    ):
        if theirs is not None:
            fields[ours] = theirs
    fmt = body.text.format if body.text else None
    if fmt is not None and fmt.type == "json_schema":
        schema = {"name": fmt.name or "response", "schema": fmt.schema_ or {}, "strict": fmt.strict}
        fields["response_format"] = {
            "type": "json_schema",
            "json_schema": {k: v for k, v in schema.items() if v is not None},
        }
    elif fmt is not None and fmt.type == "json_object":
        fields["response_format"] = {"type": "json_object"}
    if body.reasoning:
        notes.drop("reasoning: panel members are called without reasoning settings")
    return ChatRequest.model_validate(fields), conversation


def asks_for_reasoning(body: ResponsesRequest) -> bool | None:
    """Whether the request's `reasoning.summary` (`auto`, `concise`, `detailed`: what Codex sends) asks
    to see reasoning summaries; without one the config decides."""
    summary = (body.reasoning or {}).get("summary")
    return True if summary in _SUMMARIES else None


_SUMMARIES = ("auto", "concise", "detailed")


# -- answer -----------------------------------------------------------------------------------------


def response_skeleton(body: ResponsesRequest, response_id: str) -> ResponseObject:
    """The response as it starts (`in_progress`, no output), echoing the request's settings."""
    choice = body.tool_choice
    return ResponseObject(
        id=response_id,
        created_at=now(),
        status="in_progress",
        model=body.model,
        instructions=body.instructions,
        max_output_tokens=body.max_output_tokens,
        parallel_tool_calls=body.parallel_tool_calls is not False,
        previous_response_id=body.previous_response_id,
        reasoning=body.reasoning,
        store=body.store is not False,
        temperature=body.temperature,
        top_p=body.top_p,
        tool_choice=choice.model_dump(exclude_none=True) if isinstance(choice, ToolChoiceObject) else choice or "auto",
        tools=[t.model_dump(mode="json", exclude_none=True) for t in body.tools or []],
        text=(
            body.text.model_dump(mode="json", exclude_none=True, by_alias=True)
            if body.text
            else {"format": {"type": "text"}}
        ),
        user=body.user,
        metadata=body.metadata or {},
    )


def output_items(message: AssistantMessage, tools: ToolMap, message_id: str | None = None) -> list[OutputItem]:
    items: list[OutputItem] = []
    if message.content:
        items.append(OutputMessage(id=message_id or _item_id("msg"), content=[OutputText(text=message.content)]))
    items.extend(tools.back(call) for call in message.tool_calls or [])
    return items


def response_usage(usage: Usage) -> ResponseUsage:
    return ResponseUsage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
    )


def finished(response: ResponseObject, result: FusionResult, output: list[OutputItem]) -> ResponseObject:
    """The response as it ends: its output, its status (incomplete when cut short) and the run's usage."""
    update: dict[str, Any] = {"output": output, "usage": response_usage(result.usage), "status": "completed"}
    if result.finish_reason == "length":
        update.update(status="incomplete", incomplete_details={"reason": "max_output_tokens"})
    elif result.finish_reason == "content_filter":
        update.update(status="incomplete", incomplete_details={"reason": "content_filter"})
    return response.model_copy(update=update)


def _dump(item: OutputItem) -> dict[str, Any]:
    data = item.model_dump()
    if data.get("namespace") is None:
        data.pop("namespace", None)
    return data


def response_json(response: ResponseObject, fusionkit: dict[str, Any] | None) -> dict[str, Any]:
    data = response.model_dump(exclude={"output"})
    data["output"] = [_dump(item) for item in response.output]
    if fusionkit is not None:
        data["fusionkit"] = fusionkit
    return data


class ResponseStream:
    """The Responses SSE events of one answer, numbered by `sequence_number` from 0.

    The run's reasoning, when asked for, is a `reasoning` item first: one summary part whose text
    arrives as it happens, done when the answer begins. The message item opens on the first text
    delta, so a turn that is only tool calls has no empty message; tool calls (known when the run
    ends) follow it, then `response.completed` with every item in output order.
    """

    def __init__(self, response: ResponseObject, tools: ToolMap, notes: DoorNotes) -> None:
        self.response = response
        self.tools = tools
        self.notes = notes
        self.seq = 0
        self.output: list[OutputItem] = []  # the items done so far, in output order
        self.summary: list[str] | None = None  # the reasoning item's text while it is open
        self.reasoning_id = _item_id("rs")
        self.text: list[str] | None = None
        self.message_id = _item_id("msg")
        self.message_index = 0

    def _event(self, type: str, **fields: Any) -> bytes:
        frame = sse_event(type, {"type": type, "sequence_number": self.seq, **fields})
        self.seq += 1
        return frame

    def opening(self) -> list[bytes]:
        body = response_json(self.response, None)
        return [self._event("response.created", response=body), self._event("response.in_progress", response=body)]

    def keepalive(self) -> list[bytes]:
        return [sse_comment()]

    def phase(self, name: str) -> list[bytes]:
        return [sse_comment(name)]

    def _reasoning_where(self) -> dict[str, Any]:
        # Output index 0: the reasoning item opens before anything else can.
        return {"item_id": self.reasoning_id, "output_index": 0, "summary_index": 0}

    def reasoning(self, piece: Reasoning) -> list[bytes]:
        if self.text is not None:
            return []  # the engine reasons before the answer; once it began there is no place for more
        frames = []
        if self.summary is None:
            self.summary = []
            item = OutputReasoning(id=self.reasoning_id, summary=[])
            frames.append(self._event("response.output_item.added", output_index=0, item=_dump(item)))
            frames.append(
                self._event(
                    "response.reasoning_summary_part.added",
                    **self._reasoning_where(),
                    part=SummaryText(text="").model_dump(),
                )
            )
        self.summary.append(piece.text)
        frames.append(self._event("response.reasoning_summary_text.delta", **self._reasoning_where(), delta=piece.text))
        return frames

    def _end_reasoning(self) -> list[bytes]:
        """The reasoning item's done events, once the answer begins (nothing when there is none open)."""
        if self.summary is None:
            return []
        part = SummaryText(text="".join(self.summary))
        self.summary = None
        item = OutputReasoning(id=self.reasoning_id, summary=[part])
        self.output.append(item)
        where = self._reasoning_where()
        return [
            self._event("response.reasoning_summary_text.done", **where, text=part.text),
            self._event("response.reasoning_summary_part.done", **where, part=part.model_dump()),
            self._event("response.output_item.done", output_index=0, item=_dump(item)),
        ]

    def delta(self, piece: TextDelta) -> list[bytes]:
        text = piece.text
        frames = []
        if self.text is None:
            frames.extend(self._end_reasoning())
            self.text = []
            self.message_index = len(self.output)
            item = OutputMessage(id=self.message_id, status="in_progress", content=[])
            frames.append(self._event("response.output_item.added", output_index=self.message_index, item=_dump(item)))
            frames.append(
                self._event(
                    "response.content_part.added",
                    item_id=self.message_id,
                    output_index=self.message_index,
                    content_index=0,
                    part=OutputText(text="").model_dump(),
                )
            )
        self.text.append(text)
        frames.append(
            self._event(
                "response.output_text.delta",
                item_id=self.message_id,
                output_index=self.message_index,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return frames

    def finish(self, result: FusionResult) -> list[bytes]:
        frames: list[bytes] = []
        if self.text is None and result.message.content:
            frames.extend(self.delta(TextDelta(result.message.content)))
        frames.extend(self._end_reasoning())  # a turn that is only tool calls
        if self.text is not None:
            text = "".join(self.text)
            part = OutputText(text=text)
            message = OutputMessage(id=self.message_id, content=[part])
            where = {"item_id": self.message_id, "output_index": self.message_index, "content_index": 0}
            frames.append(self._event("response.output_text.done", **where, text=text, logprobs=[]))
            frames.append(self._event("response.content_part.done", **where, part=part.model_dump()))
            frames.append(
                self._event("response.output_item.done", output_index=self.message_index, item=_dump(message))
            )
            self.output.append(message)
        for call in result.message.tool_calls or []:
            item = self.tools.back(call)
            index = len(self.output)
            where = {"item_id": item.id, "output_index": index}
            if isinstance(item, OutputFunctionCall):
                opened: OutputItem = item.model_copy(update={"status": "in_progress", "arguments": ""})
                frames.append(self._event("response.output_item.added", output_index=index, item=_dump(opened)))
                frames.append(self._event("response.function_call_arguments.delta", **where, delta=item.arguments))
                frames.append(
                    self._event(
                        "response.function_call_arguments.done", **where, name=item.name, arguments=item.arguments
                    )
                )
            else:
                opened = item.model_copy(update={"status": "in_progress", "input": ""})
                frames.append(self._event("response.output_item.added", output_index=index, item=_dump(opened)))
                frames.append(self._event("response.custom_tool_call_input.delta", **where, delta=item.input))
                frames.append(self._event("response.custom_tool_call_input.done", **where, input=item.input))
            frames.append(self._event("response.output_item.done", output_index=index, item=_dump(item)))
            self.output.append(item)
        done = finished(self.response, result, self.output)
        kind = "response.completed" if done.status == "completed" else "response.incomplete"
        frames.append(self._event(kind, response=response_json(done, self.notes.metadata(result))))
        return frames

    def paused(self, pause: Paused) -> list[bytes]:
        raise AssertionError("this door refuses external tool execution, so its runs never pause")

    def failed(self, error: APIError) -> list[bytes]:
        failed = self.response.model_copy(
            update={"status": "failed", "error": {"code": error.code or error.type, "message": error.message}}
        )
        return [self._event("response.failed", response=response_json(failed, None))]
