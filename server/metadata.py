"""A run's result as the `fusionkit` object every answer carries (on the last chunk when streaming)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from server.engine import FusionResult
from server.protocol.chat import FusionMetadata

__all__ = ["fusion_metadata", "paused_metadata"]


def fusion_metadata(result: FusionResult) -> FusionMetadata:
    outcome = result.outcome
    return FusionMetadata(
        run_id=result.run_id,
        trace_id=result.trace_id,
        state="completed",
        status="succeeded",
        event_cursor=result.event_cursor,
        mode=result.mode,
        route=result.route,
        route_reasons=result.route_reasons,
        candidate_count=len(result.candidates),
        candidate_model_ids=[c.endpoint_id for c in result.candidates],
        failed_members=result.failed,
        decision=outcome.decision,
        judge_model_id=outcome.judge.model_id if outcome.judge else None,
        synthesizer_model_id=outcome.synthesizer_model_id,
        judge_parse_error=outcome.judge.parse_error if outcome.judge else None,
        verification=outcome.verification.payload() if outcome.verification else None,
        cost_estimate=asdict(result.cost),
        latency_ms=result.latency_ms,
        failures=[f.payload() for f in outcome.failures],
        mock=result.mock,
    )


def paused_metadata(run_id: str, trace_id: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """The `fusionkit` object of a run that waits for external tool results: what to run, and where to send it."""
    return {
        "run_id": run_id,
        "trace_id": trace_id,
        "state": "requires_action",
        "status": "requires_action",
        "requires_action": {
            "type": "submit_tool_results",
            "submit_to": f"/v1/fusion/runs/{run_id}/tool-results",
            "tool_calls": calls,
        },
    }
