"""Candidates: what one panel member (or one self sample) answered, and how candidates compare."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, Field

from bridge.protocol import ToolCall, Usage

__all__ = ["Candidate", "MemberPlan", "same_tool_calls", "unanimous"]


class MemberPlan(BaseModel):
    """One call the panel (or self sampling) will make."""

    candidate_id: str
    endpoint_id: str
    temperature: float | None = None
    seed: int | None = None


class Candidate(BaseModel):
    candidate_id: str
    endpoint_id: str
    model: str
    text: str
    tool_calls: list[ToolCall] = Field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_ms: float = 0.0
    artifact_sha256: str | None = None
    # It did not succeed (a trajectory whose status is not `succeeded`): context packing leaves these out first.
    failed: bool = False
    # The client asked for JSON (response_format) and this answer is not what it asked: why (server.engine.structured).
    schema_error: str | None = None

    @property
    def is_empty(self) -> bool:
        return not self.text.strip() and not self.tool_calls

    def comparable(self) -> Any:
        """What "the same answer" means: text with whitespace and case folded; calls by name and parsed args."""
        calls = []
        for call in self.tool_calls:
            try:
                args = json.loads(call.function.arguments or "{}")
            except json.JSONDecodeError:
                args = call.function.arguments
            calls.append((call.function.name, json.dumps(args, sort_keys=True)))
        return (re.sub(r"\s+", " ", self.text).strip().casefold(), sorted(calls))


def unanimous(candidates: list[Candidate]) -> bool:
    return len(candidates) > 1 and len({json.dumps(c.comparable()) for c in candidates}) == 1


def same_tool_calls(candidates: list[Candidate]) -> bool:
    """Every candidate proposes calls, and the same ones (name and parsed arguments)."""
    if len(candidates) < 2 or not all(c.tool_calls for c in candidates):
        return False
    return len({json.dumps(c.comparable()[1]) for c in candidates}) == 1
