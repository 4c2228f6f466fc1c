"""A run's result as the `fusionkit` object every answer carries (on the last chunk when streaming)."""

from __future__ import annotations

from dataclasses import asdict

from server.engine import FusionResult
from server.protocol.chat import FusionMetadata

__all__ = ["fusion_metadata"]


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
        mock=result.mock,
    )
