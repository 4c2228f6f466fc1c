"""An OpenAI conversation as provider-neutral turns, for adapters whose APIs are not OpenAI's.

Anthropic and Gemini both want: the system prompt apart, strictly alternating user/assistant
turns (consecutive same-role messages merged), tool calls as structured parts with parsed
arguments, and tool results as parts of a user turn that name the call they answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from bridge.errors import bad_request
from bridge.protocol import ChatMessage, message_text

__all__ = ["Part", "Turn", "split_conversation"]


@dataclass
class Part:
    kind: Literal["text", "image", "tool_call", "tool_result"]
    text: str = ""
    image_url: str = ""
    call_id: str = ""
    name: str = ""
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass
class Turn:
    role: Literal["user", "assistant"]
    parts: list[Part]


def _parse_arguments(raw: str, where: str) -> dict[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError:
        raise bad_request(f"{where}: tool call arguments are not valid JSON", param=where) from None
    if not isinstance(value, dict):
        raise bad_request(f"{where}: tool call arguments must be a JSON object", param=where)
    return value


def _content_parts(message: ChatMessage) -> list[Part]:
    if message.content is None:
        return []
    if isinstance(message.content, str):
        return [Part("text", text=message.content)] if message.content else []
    parts = []
    for part in message.content:
        if part.type == "text" and part.text:
            parts.append(Part("text", text=part.text))
        elif part.type == "image_url" and part.image_url and part.image_url.get("url"):
            parts.append(Part("image", image_url=str(part.image_url["url"])))
    return parts


def split_conversation(messages: list[ChatMessage]) -> tuple[str, list[Turn]]:
    """(system prompt, turns): system/developer text joined; same-role neighbours merged."""
    system: list[str] = []
    turns: list[Turn] = []
    call_names: dict[str, str] = {}
    for i, message in enumerate(messages):
        if message.role in ("system", "developer"):
            system.append(message_text(message))
            continue
        if message.role == "assistant":
            role: Literal["user", "assistant"] = "assistant"
            parts = _content_parts(message)
            for j, call in enumerate(message.tool_calls or []):
                call_names[call.id] = call.function.name
                where = f"messages[{i}].tool_calls[{j}].function.arguments"
                parts.append(
                    Part(
                        "tool_call",
                        call_id=call.id,
                        name=call.function.name,
                        arguments=_parse_arguments(call.function.arguments, where),
                    )
                )
        elif message.role == "tool":
            role = "user"
            call_id = message.tool_call_id or ""
            parts = [Part("tool_result", call_id=call_id, name=call_names.get(call_id, ""), text=message_text(message))]
        else:
            role = "user"
            parts = _content_parts(message)
        if not parts:
            continue
        if turns and turns[-1].role == role:
            turns[-1].parts.extend(parts)
        else:
            turns.append(Turn(role, parts))
    return "\n\n".join(s for s in system if s), turns
