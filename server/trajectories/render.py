"""Trajectories as the judge sees them: one labelled candidate each, long fields cut with a marker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from server.engine import FusionResult
from server.engine.candidates import Candidate
from server.engine.judge import JudgeAnalysis
from server.metadata import fusion_metadata
from server.trajectories.models import Trajectory

__all__ = ["best_verified", "render", "synthesis_record", "to_candidates"]

FIELD_LIMIT = 2_000
DIFF_LIMIT = 6_000
MAX_STEPS = 40


def _cut(text: str, limit: int = FIELD_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n[... truncated {len(text) - limit} characters ...]"


def render(trajectory: Trajectory) -> str:
    lines = []
    steps = trajectory.steps
    shown = steps if len(steps) <= MAX_STEPS else steps[: MAX_STEPS // 2] + steps[-MAX_STEPS // 2 :]
    for number, step in enumerate(shown, start=1):
        if len(steps) > MAX_STEPS and number == MAX_STEPS // 2 + 1:
            lines.append(f"[... {len(steps) - MAX_STEPS} steps omitted ...]")
        if step.reasoning:
            lines.append(f"step {number} reasoning: {_cut(step.reasoning)}")
        if step.tool_call:
            lines.append(f"step {number} tool call: {step.tool_call.name}({_cut(step.tool_call.arguments_text())})")
        if step.observation:
            lines.append(f"step {number} observation: {_cut(step.observation)}")
    if trajectory.verification:
        details = f": {_cut(trajectory.verification.details)}" if trajectory.verification.details else ""
        lines.append(f"verification: {trajectory.verification.status}{details}")
    if trajectory.diff:
        lines.append(f"diff:\n{_cut(trajectory.diff, DIFF_LIMIT)}")
    lines.append(f"final output: {_cut(trajectory.final_output, 4 * FIELD_LIMIT)}")
    return "\n".join(lines)


def to_candidates(trajectories: list[Trajectory]) -> list[Candidate]:
    return [
        Candidate(
            candidate_id=t.id or f"t{i + 1}", endpoint_id=t.model or "agent", model=t.model or "agent", text=render(t)
        )
        for i, t in enumerate(trajectories)
    ]


def best_verified(trajectories: list[Trajectory]) -> Callable[[list[Candidate], JudgeAnalysis | None], Candidate]:
    """The fallback when the synthesizer returns nothing: the judge's best verified trajectory's output.

    Order: the judge's best, then its ranking, then the given order; verified trajectories first.
    """
    by_id = {t.id: t for t in trajectories}

    def choose(_: list[Candidate], analysis: JudgeAnalysis | None) -> Candidate:
        order = [analysis.best_candidate_id, *analysis.ranking] if analysis else []
        order += list(by_id)
        for verified_only in (True, False):
            for trajectory_id in order:
                trajectory = by_id.get(trajectory_id)
                if trajectory is not None and (trajectory.verified or not verified_only):
                    label = trajectory.model or "agent"
                    return Candidate(
                        candidate_id=trajectory.id or "", endpoint_id=label, model=label, text=trajectory.final_output
                    )
        raise AssertionError("there is at least one trajectory")

    return choose


def synthesis_record(
    result: FusionResult, *, judge: str, synth: str, synthesis_id: str | None, trajectory_ids: list[str]
) -> dict[str, Any]:
    """The `:fuse` answer (also what `fusionkit fuse --json` prints)."""
    meta = fusion_metadata(result)
    return {
        "object": "fusion.trajectory_synthesis",
        "final_output": result.message.content or "",
        "synthesis_id": synthesis_id,
        "decision": meta.decision.model_dump() if meta.decision else None,
        "rationale": result.analysis.rationale if result.analysis else "",
        "judge_synthesis_record": {
            "judge_model_id": judge,
            "synthesizer_model_id": synth,
            "analysis": result.analysis.model_dump() if result.analysis else None,
            "parse_error": meta.judge_parse_error,
            "trajectory_ids": trajectory_ids,
        },
        "usage": result.usage.model_dump(),
        "fusionkit": meta.model_dump(),
    }
