"""The judge's pass over the candidates: its request, its recorded reply, its analysis, and the summary a
client that asked for the run's reasoning reads while the answer is still to come.

    judge, raw = await judge_candidates(run, calls, request, candidates, "careful", prompts=p, max_tokens=2048)
    judge.analysis, judge.parse_error
"""

from __future__ import annotations

import time

from bridge.errors import APIError
from bridge.protocol import ChatRequest
from server.engine.calls import ModelCalls, RunState, ms_since
from server.engine.candidates import Candidate
from server.engine.events import Phase
from server.engine.judge import JudgeAnalysis, parse_analysis
from server.engine.prompts import judge_request, record_prompt
from server.engine.result import JudgeOutcome
from server.prompt_files import PromptSet

__all__ = ["judge_candidates", "reasoning_summary"]


async def judge_candidates(
    run: RunState,
    calls: ModelCalls,
    request: ChatRequest,
    candidates: list[Candidate],
    judge_id: str,
    *,
    prompts: PromptSet,
    max_tokens: int,
) -> tuple[JudgeOutcome, str]:
    """The judge's analysis (and its raw reply). A failed or unparseable judge degrades, never fails the run."""
    await run.recorder.transition("judging")
    await run.send(Phase("judging"))
    started = time.perf_counter()
    endpoint = calls.clients[judge_id].endpoint
    asked = await record_prompt(
        run.recorder,
        judge_request(
            endpoint,
            request,
            candidates,
            prompts=prompts,
            structured=endpoint.supports_structured_output(),
            max_tokens=max_tokens,
        ),
    )
    call_failed = False
    try:
        judged_text = (await calls.call(run, "judge", judge_id, asked)).text
        analysis, parse_error = parse_analysis(judged_text)
    except APIError as error:
        # Without an analysis the synthesizer still has the candidates: degrade, do not fail.
        judged_text, analysis, parse_error = "", None, f"the judge call failed: {error.message}"
        call_failed = True
    run.latency_ms["judge"] = ms_since(started)
    raw_sha = await run.recorder.artifact(judged_text, "application/json" if analysis else "text/plain")
    await run.recorder.event(
        "judge.record",
        {
            "judge_model_id": judge_id,
            "analysis": analysis.model_dump() if analysis else None,
            "parse_error": parse_error,
            "raw_artifact_sha256": raw_sha,
        },
    )
    await run.reason(reasoning_summary(judge_id, analysis, parse_error))
    judge = JudgeOutcome(model_id=judge_id, analysis=analysis, parse_error=parse_error, call_failed=call_failed)
    return judge, judged_text


def reasoning_summary(judge_id: str, analysis: JudgeAnalysis | None, parse_error: str | None) -> str:
    """The judge's findings as a few readable lines (what `fusion.show_reasoning` streams)."""
    if analysis is None:
        return f"The judge ({judge_id}) gave no analysis ({parse_error}); the answer is written from the candidates.\n"
    lines = [f"The judge ({judge_id}) compared the candidates."]
    for title, items in (
        ("They agree", analysis.consensus),
        ("They disagree", analysis.contradictions),
        ("Only one says", analysis.unique_insights),
        ("Likely wrong", analysis.likely_errors),
        ("Missing", analysis.coverage_gaps),
    ):
        if items:
            lines.append(f"{title}: " + "; ".join(item.rstrip(". ") for item in items[:3]) + ".")
    if analysis.best_candidate_id:
        why = f" {analysis.rationale}" if analysis.rationale else ""
        lines.append(f"Best: {analysis.best_candidate_id}.{why}")
    return "\n".join(lines) + "\n"
