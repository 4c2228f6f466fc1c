"""The trajectory endpoints' wire format: `POST /v1/fusion/trajectories:fuse` and
`POST /v1/fusion/trajectory:step`, as fusionkit-server 0.1.1 declares them.

A trajectory is the seed's `TrajectoryInput` (harness-trajectory.v1 without its metadata); the seed
declares these as plain pydantic models, so unknown keys are ignored, not refused.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.base_models import Open
from bridge.protocol import ChatMessage, Tool
from server.protocol.native import Answer, HarnessKind, JudgeSynthesisRecord, Sha256, Status, SynthesisDecision

__all__ = [
    "FuseTrajectoriesRequest",
    "StepTrajectoriesRequest",
    "Trajectory",
    "TrajectoryStep",
    "TrajectorySynthesis",
    "TrajectoryVerification",
]


class _Lenient(BaseModel):
    """Request models the seed declares as plain pydantic models: unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore")


class TrajectoryStep(_Lenient):
    index: int = Field(ge=0)
    type: Literal["reasoning", "tool_call", "observation", "output"]
    text: str | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None
    tool_input: str | None = None
    is_error: bool | None = None
    output_hash: Sha256 | None = None


class TrajectoryVerification(_Lenient):
    status: Status
    evidence: list[str] | None = None
    exit_code: int | None = None


class Trajectory(_Lenient):
    """One agent's trajectory: the seed's `TrajectoryInput` (harness-trajectory.v1 without its metadata)."""

    trajectory_id: str = Field(min_length=1)
    model_id: str = Field(min_length=1)
    status: Status
    steps: list[TrajectoryStep] = Field(default_factory=list)
    final_output: str
    candidate_id: str | None = None
    model: str | None = None
    harness_kind: HarnessKind | None = None
    diff: str | None = None
    verification: TrajectoryVerification | None = None
    metadata: dict[str, Any] | None = None

    @property
    def verified(self) -> bool:
        return self.verification is not None and self.verification.status == "succeeded"


class FuseTrajectoriesRequest(_Lenient):
    # The task the trajectories worked on: the judge and synthesizer cannot answer without one.
    messages: list[ChatMessage] = Field(min_length=1)
    trajectories: list[Trajectory]
    judge_model: str | None = None
    synthesizer_model: str | None = None
    # An addition: the final output streamed as chat.completion chunks while the synthesizer writes it.
    stream: bool = False


def _flat_tool(raw: Any) -> dict[str, Any] | None:
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


class StepTrajectoriesRequest(Open):
    """`:step`: raw OpenAI messages, trajectories as reference (none is fine), tools, and OpenAI's sampling fields."""

    model: str = "fusionkit/router"
    messages: list[ChatMessage] = Field(min_length=1)
    trajectories: list[Trajectory] = Field(default_factory=list)
    tools: list[Tool] | None = None
    tool_choice: Any = None
    judge_model: str | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None

    @field_validator("tools", mode="before")
    @classmethod
    def _tools(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list):
            raise ValueError("must be a list of tools")
        return [t for t in (_flat_tool(raw) for raw in value) if t is not None] or None

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _tool_choice(cls, value: Any) -> Any:
        # The seed's flat `{"name": ...}` is OpenAI's `{"type": "function", "function": {"name": ...}}`.
        if isinstance(value, dict) and "function" not in value and isinstance(value.get("name"), str):
            return {"type": "function", "function": {"name": value["name"]}}
        return value


class TrajectorySynthesis(Answer):
    """`POST /v1/fusion/trajectories:fuse` (and `fusionkit fuse --json`)."""

    final_output: str
    synthesis_id: str | None
    decision: SynthesisDecision
    rationale: str
    judge_synthesis_record: JudgeSynthesisRecord
    usage: dict[str, Any] = Field(default_factory=dict)
    fusionkit: dict[str, Any] = Field(default_factory=dict)
