"""Trajectories as the judge sees them (one labelled candidate each, whole: packing cuts the middle of a
long one to fit the judge's context, keeping its head and its tail), the fallback when nothing is
synthesized, and the `:fuse` answer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from server.engine import FusionResult
from server.engine.candidates import Candidate
from server.engine.judge import JudgeAnalysis
from server.metadata import fusion_metadata
from server.protocol.native import JudgeSynthesisRecord
from server.protocol.trajectories import Trajectory, TrajectoryStep, TrajectorySynthesis

__all__ = ["best_verified", "render", "synthesis_record", "to_candidates"]


def _step(step: TrajectoryStep) -> str:
    head = f"step {step.index} {step.type.replace('_', ' ')}"
    if step.is_error:
        head += " (error)"
    if step.type == "tool_call":
        call = f"{step.tool_name or 'tool'}({step.tool_input or ''})"
        return f"{head}: {call}" + (f" [id {step.tool_call_id}]" if step.tool_call_id else "")
    return f"{head}: {step.text or ''}"


def render(trajectory: Trajectory) -> str:
    """The trajectory as text, in the order packing relies on: what it is and its first steps at the head,
    its last steps, verification, diff and final output at the tail."""
    lines = [f"status: {trajectory.status}"]
    lines += [_step(step) for step in trajectory.steps]
    check = trajectory.verification
    if check is not None:
        exit_code = f" (exit code {check.exit_code})" if check.exit_code is not None else ""
        evidence = f": {'; '.join(check.evidence)}" if check.evidence else ""
        lines.append(f"verification: {check.status}{exit_code}{evidence}")
    if trajectory.diff:
        lines.append(f"diff:\n{trajectory.diff}")
    lines.append(f"final output: {trajectory.final_output}")
    return "\n".join(lines)


def _label(trajectory: Trajectory) -> str:
    return trajectory.model or trajectory.model_id


def to_candidates(trajectories: list[Trajectory]) -> list[Candidate]:
    """One candidate per trajectory, labelled by its id (a repeated id gets `#2`, `#3`, ... for the judge)."""
    seen: dict[str, int] = {}
    candidates = []
    for trajectory in trajectories:
        seen[trajectory.trajectory_id] = seen.get(trajectory.trajectory_id, 0) + 1
        count = seen[trajectory.trajectory_id]
        label = _label(trajectory)
        candidates.append(
            Candidate(
                candidate_id=trajectory.trajectory_id + (f"#{count}" if count > 1 else ""),
                endpoint_id=label,
                model=label,
                text=render(trajectory),
                failed=trajectory.status != "succeeded",
            )
        )
    return candidates


def best_verified(trajectories: list[Trajectory]) -> Callable[[list[Candidate], JudgeAnalysis | None], Candidate]:
    """The fallback when the synthesizer returns nothing: the judge's best verified trajectory's output.

    Order: the judge's best, then its ranking, then the given order; verified trajectories first.
    Without trajectories (a `:step` may have none) the fallback is the empty answer the model gave.
    """
    by_id = dict(zip((c.candidate_id for c in to_candidates(trajectories)), trajectories, strict=True))

    def choose(_: list[Candidate], analysis: JudgeAnalysis | None) -> Candidate:
        order = [analysis.best_candidate_id, *analysis.ranking] if analysis else []
        order += list(by_id)
        for verified_only in (True, False):
            for candidate_id in order:
                trajectory = by_id.get(candidate_id or "")
                if trajectory is not None and (trajectory.verified or not verified_only):
                    label = _label(trajectory)
                    return Candidate(
                        candidate_id=candidate_id or "", endpoint_id=label, model=label, text=trajectory.final_output
                    )
        return Candidate(candidate_id="none", endpoint_id="none", model="none", text="")

    return choose


def _rationale(analysis: JudgeAnalysis | None) -> str:
    if analysis is None:
        return ""
    parts = [*analysis.consensus, *analysis.contradictions, *analysis.unique_insights, *analysis.coverage_gaps]
    return analysis.rationale or "; ".join(parts[:6])


def synthesis_record(
    result: FusionResult, *, judge: str, synth: str, synthesis_id: str | None, trajectories: list[Trajectory]
) -> TrajectorySynthesis:
    """The `:fuse` answer (also what `fusionkit fuse --json` prints), in the seed's shape.

    `synthesis_id` is the run id when a router recorded the fusion; a direct fusion gets one of its own.
    """
    meta = fusion_metadata(result)
    decision = meta.decision
    final = result.message.content or ""
    sid = synthesis_id or f"synthesis_{uuid.uuid4().hex}"
    analysis = result.analysis
    record = JudgeSynthesisRecord(
        synthesis_id=sid,
        input_candidate_ids=[c.candidate_id for c in to_candidates(trajectories)],
        status="succeeded",
        decision=decision.type if decision else "synthesize",
        final_output=final,
        selected_candidate_id=decision.selected_candidate_id if decision else None,
        rationale=_rationale(analysis),
        metrics={
            "trajectory_contributions": [
                {
                    "trajectory_id": t.trajectory_id,
                    "model_id": t.model_id,
                    "status": t.status,
                    "verification_status": t.verification.status if t.verification else None,
                    "step_count": len(t.steps),
                    "reason": "included as trajectory fusion evidence",
                }
                for t in trajectories
            ],
            "judge_structured_parse_status": "parsed" if analysis is not None else "failed",
            "fusion_unit": "trajectory",
            "judge_model_id": judge,
            "synthesizer_model_id": synth,
            "analysis": analysis.model_dump() if analysis else None,
            "parse_error": meta.judge_parse_error,
            "decision_reason": decision.reason if decision else None,
        },
    )
    usage: dict[str, Any] = result.usage.model_dump()
    return TrajectorySynthesis(
        final_output=final,
        synthesis_id=sid,
        decision=record.decision,
        rationale=record.rationale or "",
        judge_synthesis_record=record,
        usage=usage,
        fusionkit=meta.model_dump(),
    )
