"""The trajectory format and the bodies of `:fuse` and `:step` (documented field by field in docs/agents.md)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bridge.protocol import ChatMessage, Tool

__all__ = ["StepRequest", "ToolCallRecord", "Trajectory", "TrajectoryFuseRequest", "TrajectoryStep", "Verification"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolCallRecord(_Strict):
    name: str = Field(min_length=1)
    arguments: dict[str, Any] | str = Field(default_factory=dict)

    def arguments_text(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments, sort_keys=True)


class TrajectoryStep(_Strict):
    reasoning: str | None = None
    tool_call: ToolCallRecord | None = None
    observation: str | None = None


class Verification(_Strict):
    status: Literal["passed", "failed", "partial", "unknown"] = "unknown"
    details: str | None = None


class Trajectory(_Strict):
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    model: str | None = None
    final_output: str
    steps: list[TrajectoryStep] = Field(default_factory=list)
    verification: Verification | None = None
    diff: str | None = None
    metadata: dict[str, Any] | None = None

    @property
    def verified(self) -> bool:
        return self.verification is not None and self.verification.status == "passed"


def _ids_unique(trajectories: list[Trajectory]) -> list[Trajectory]:
    for i, trajectory in enumerate(trajectories):
        if trajectory.id is None:
            trajectory.id = f"t{i + 1}"
    ids = [t.id for t in trajectories]
    duplicates = sorted({i for i in ids if ids.count(i) > 1 and i is not None})
    if duplicates:
        raise ValueError(f"trajectory ids must be unique; repeated: {', '.join(duplicates)}")
    return trajectories


class TrajectoryFuseRequest(BaseModel):
    """`{messages | prompt, trajectories, judge_model?, synthesizer_model?}`."""

    model_config = ConfigDict(extra="forbid")

    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    trajectories: list[Trajectory] = Field(min_length=1)
    judge_model: str | None = None
    synthesizer_model: str | None = None

    @field_validator("trajectories")
    @classmethod
    def _unique(cls, value: list[Trajectory]) -> list[Trajectory]:
        return _ids_unique(value)

    @model_validator(mode="after")
    def _has_task(self) -> TrajectoryFuseRequest:
        if not self.messages and not self.prompt:
            raise ValueError("give 'messages' or 'prompt': the task the trajectories worked on")
        return self

    def conversation(self) -> list[ChatMessage]:
        return self.messages or [ChatMessage(role="user", content=self.prompt)]


def _normalise_tool(raw: Any) -> dict[str, Any] | None:
    """Nested `{"type": "function", "function": {...}}` or flat `{name, description, parameters}`; None if nameless."""
    if not isinstance(raw, dict):
        return None
    nested = raw.get("function")
    function: dict[str, Any] = nested if isinstance(nested, dict) else raw
    name = function.get("name")
    if not isinstance(name, str) or not name:
        return None
    out = {"name": name, "description": function.get("description"), "parameters": function.get("parameters")}
    return {"type": "function", "function": {k: v for k, v in out.items() if v is not None}}


class StepRequest(BaseModel):
    """`:step`: raw OpenAI messages, the trajectories as reference, tools, and the OpenAI sampling fields."""

    model_config = ConfigDict(extra="allow")

    messages: list[ChatMessage] = Field(min_length=1)
    trajectories: list[Trajectory] = Field(min_length=1)
    tools: list[Tool] | None = None
    tool_choice: Any = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    model: str | None = None
    judge_model: str | None = None

    @field_validator("trajectories")
    @classmethod
    def _unique(cls, value: list[Trajectory]) -> list[Trajectory]:
        return _ids_unique(value)

    @field_validator("tools", mode="before")
    @classmethod
    def _tools(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list):
            raise ValueError("must be a list of tools")
        return [t for t in (_normalise_tool(raw) for raw in value) if t is not None] or None
