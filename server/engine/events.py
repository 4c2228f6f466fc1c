"""What the engine tells its caller while a run is under way (for streaming and keep-alives)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["EngineEvent", "Paused", "Phase", "Reasoning", "TextDelta"]


@dataclass(frozen=True)
class Phase:
    """The run entered a phase: generating, judging, synthesizing, verifying."""

    name: str


@dataclass(frozen=True)
class TextDelta:
    """A piece of the final answer, as the model that writes it produces it (with its logprobs, if asked)."""

    text: str
    logprobs: dict[str, Any] | None = None


@dataclass(frozen=True)
class Reasoning:
    """What the run is doing and why, for a client that asked to see it (`fusion.show_reasoning`): the
    panel's progress and the judge's analysis, as readable text, before the answer."""

    text: str


@dataclass(frozen=True)
class Paused:
    """The run waits for external tool results: every member is finished or waiting on one of `calls`
    (`{tool_call_id, candidate_id, name, arguments}`), which the client runs and submits."""

    calls: list[dict[str, Any]]


EngineEvent = Phase | TextDelta | Reasoning | Paused
