"""The trajectory file `fusionkit fuse` reads, and its conversion to the one wire format (the seed's).

    request = load_trajectory_file(data)        # a FuseTrajectoriesRequest, or TrajectoryFileError

A file gives the task (`messages`, or a plain `prompt`) and the trajectories, each in the wire
format (`trajectory_id`, `model_id`, `status`, `steps[{index, type, ...}]`, ...) or in the
friendlier format documented in docs/agents.md (`id`, `model`, `steps[{reasoning, tool_call,
observation}]`, `verification{status: passed|...}`). Friendly trajectories are converted here;
past this module there is only the wire format.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from bridge.base_models import Strict
from bridge.errors import describe_validation_error, key_path
from bridge.protocol import ChatMessage
from server.protocol.native import Status
from server.protocol.trajectories import FuseTrajectoriesRequest, Trajectory

__all__ = ["FriendlyTrajectory", "TrajectoryFileError", "load_trajectory_file"]


class ToolCallRecord(Strict):
    name: str = Field(min_length=1)
    arguments: dict[str, Any] | str = Field(default_factory=dict)

    def arguments_text(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments, sort_keys=True)


class FriendlyStep(Strict):
    reasoning: str | None = None
    tool_call: ToolCallRecord | None = None
    observation: str | None = None


class FriendlyVerification(Strict):
    status: Literal["passed", "failed", "partial", "unknown"] = "unknown"
    details: str | None = None


# The wire format's verification statuses are the contract's run statuses: "partial" has none of its
# own, and is not a pass; "unknown" is a check that has not reported.
_VERIFIED: dict[str, Status] = {"passed": "succeeded", "failed": "failed", "partial": "failed", "unknown": "pending"}


class FriendlyTrajectory(Strict):
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,64}$")
    model: str | None = None
    final_output: str
    steps: list[FriendlyStep] = Field(default_factory=list)
    verification: FriendlyVerification | None = None
    diff: str | None = None
    metadata: dict[str, Any] | None = None

    def to_wire(self, index: int) -> Trajectory:
        """This trajectory in the wire format: each step's parts become numbered steps of their own."""
        steps: list[dict[str, Any]] = []
        for step in self.steps:
            call_id = None
            if step.reasoning:
                steps.append({"type": "reasoning", "text": step.reasoning})
            if step.tool_call:
                call_id = f"call_{len(steps)}"
                tool_input = step.tool_call.arguments_text()
                steps.append(
                    {
                        "type": "tool_call",
                        "tool_name": step.tool_call.name,
                        "tool_call_id": call_id,
                        "tool_input": tool_input,
                    }
                )
            if step.observation:
                steps.append({"type": "observation", "text": step.observation, "tool_call_id": call_id})
        verification = None
        if self.verification is not None:
            details = self.verification.details
            if details and self.verification.status == "partial":
                details = f"partial: {details}"
            verification = {
                "status": _VERIFIED[self.verification.status],
                "evidence": [details] if details else None,
            }
        return Trajectory.model_validate(
            {
                "trajectory_id": self.id or f"t{index + 1}",
                "model_id": self.model or "agent",
                "model": self.model,
                "status": "succeeded",
                "steps": [{"index": i, **step} for i, step in enumerate(steps)],
                "final_output": self.final_output,
                "diff": self.diff,
                "verification": verification,
                "metadata": self.metadata,
            }
        )


class TrajectoryFileError(ValueError):
    """What is wrong with a trajectory file, one `key.path: problem` per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class _TrajectoryFile(Strict):
    messages: list[ChatMessage] | None = None
    prompt: str | None = None
    trajectories: list[dict[str, Any]] = Field(min_length=1)
    judge_model: str | None = None
    synthesizer_model: str | None = None

    @model_validator(mode="after")
    def _has_task(self) -> _TrajectoryFile:
        if not self.messages and not self.prompt:
            raise ValueError("give 'messages' or 'prompt': the task the trajectories worked on")
        return self


def _problems(exc: ValidationError, data: Any, prefix: tuple[str | int, ...] = ()) -> list[str]:
    return [
        f"{key_path((*prefix, *p.loc)) or '(top level)'}: {p.message}"
        for p in describe_validation_error(exc.errors(), data).problems
    ]


def load_trajectory_file(data: dict[str, Any]) -> FuseTrajectoriesRequest:
    """A trajectory file's content as the `:fuse` request; TrajectoryFileError names each bad field."""
    try:
        parsed = _TrajectoryFile.model_validate(data)
    except ValidationError as exc:
        raise TrajectoryFileError(_problems(exc, data)) from None
    trajectories: list[Trajectory] = []
    problems: list[str] = []
    for index, raw in enumerate(parsed.trajectories):
        try:
            if "trajectory_id" in raw:
                trajectories.append(Trajectory.model_validate(raw))
            else:
                trajectories.append(FriendlyTrajectory.model_validate(raw).to_wire(index))
        except ValidationError as exc:
            problems += _problems(exc, raw, ("trajectories", index))
    ids = [t.trajectory_id for t in trajectories]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        problems.append(f"trajectories: ids must be unique; repeated: {', '.join(repeated)}")
    if problems:
        raise TrajectoryFileError(problems)
    messages = parsed.messages or [ChatMessage(role="user", content=parsed.prompt)]
    return FuseTrajectoriesRequest(
        messages=messages,
        trajectories=trajectories,
        judge_model=parsed.judge_model,
        synthesizer_model=parsed.synthesizer_model,
    )
