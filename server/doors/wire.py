"""What the doors' wire formats share: the lenient request base model, named SSE events, and the
notes a door attaches to its answer saying what of the request it did not pass to the panel."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from server.engine import FusionResult
from server.metadata import fusion_metadata

__all__ = ["DoorNotes", "LenientWire", "sse_event", "type_tag"]


class LenientWire(BaseModel):
    """Request-side base: fields the API has and we do not model are kept, never refused.

    Agent clients send fields faster than any proxy learns them (`context_management`,
    `prompt_cache_key`, `client_metadata`, ...); refusing one would break the client for nothing.
    """

    model_config = ConfigDict(extra="allow", populate_by_name=True)


def type_tag(value: Any, default: str | None = None) -> str | None:
    """The `type` of a raw item, block or tool, for choosing its model; anything but a string is None."""
    kind = value.get("type", default) if isinstance(value, dict) else getattr(value, "type", default)
    return kind if isinstance(kind, str) else None


def sse_event(type: str, data: dict[str, Any]) -> bytes:
    """One SSE frame with an `event:` line naming its type, as both Anthropic and OpenAI Responses send."""
    return f"event: {type}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


class DoorNotes(BaseModel):
    """The `fusionkit.door` object: which door, and what of the request the panel did not get, and why."""

    name: str
    tools_not_offered: list[str] = Field(default_factory=list)
    dropped: list[str] = Field(default_factory=list)

    def metadata(self, result: FusionResult) -> dict[str, Any]:
        """The answer's `fusionkit` object: the run's metadata and this door's notes."""
        return {**fusion_metadata(result).model_dump(), "door": self.model_dump()}

    def drop(self, what: str) -> None:
        if what not in self.dropped:
            self.dropped.append(what)
