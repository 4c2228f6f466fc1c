"""Candidates: what one panel member (or one self sample) answered, how candidates compare, and which is best."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

from bridge.protocol import ToolCall, Usage
from server.engine.judge import JudgeAnalysis

__all__ = ["Best", "Candidate", "MemberPlan", "best_candidate", "same_tool_calls", "unanimous"]


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


# Chooses the fallback answer when the synthesizer gives none (trajectories prefer verified ones).
Best = Callable[[list[Candidate], JudgeAnalysis | None], Candidate]


def best_candidate(candidates: list[Candidate], analysis: JudgeAnalysis | None) -> Candidate:
    """The judge's best candidate, else the first of its ranking that exists, else the first candidate;
    among those in the JSON the client asked for, while there are any."""
    pool = [c for c in candidates if c.schema_error is None] or candidates
    if analysis is not None:
        by_id = {c.candidate_id: c for c in pool}
        for cid in [analysis.best_candidate_id, *analysis.ranking]:
            if cid in by_id:
                return by_id[cid]
    return pool[0]
