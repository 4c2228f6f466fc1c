"""`POST /v1/fusion/runs/{run_id}/rejudge`: judge and synthesize a recorded run's candidates again.

    POST /v1/fusion/runs/run_0123.../rejudge   {"judge_model": "careful", "synthesizer_model": "fast"}
    -> a chat.completion with the `fusionkit` object of the new run

The router reads the run's candidates (its `candidate.recorded` events and their artifacts) from
its store and calls only the judge and the synthesizer; with tools in the run's request, the
synthesizer takes the agent step, as in a live run. The panel is never asked again. Omitted models
default to the config's judge and synthesizer. The rejudge is recorded as a run of its own (mode
`rejudge`, its request naming the original run), so `fusionkit eval --replay` and
`fusionkit runs rejudge` compare judges and synthesizers on exactly the same candidates.
"""

from __future__ import annotations

import contextlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import ValidationError

from bridge.errors import conflict, not_found
from bridge.http import log_context, reads_body
from bridge.openapi import answers, errors
from bridge.protocol import ChatRequest, ToolCall
from server.completions import respond
from server.doors.launch import StartedRun
from server.engine import FusionEngine, FusionResult
from server.engine.candidates import Candidate, best_candidate
from server.engine.engine import Emit
from server.engine.planning import choose_endpoint
from server.engine.recorder import Recorder
from server.protocol.chat import FusedChatCompletion
from server.protocol.native import RejudgeRequest
from server.runs import RunService
from server.store import RunStoreAPI, is_valid_run_id

__all__ = ["recorded_candidates", "rejudge", "rejudge_router"]

MAX_EVENTS = 10_000
# What of a recorded request the judge and synthesizer see again.
_REQUEST_KEYS = ("messages", "tools", "tool_choice", "response_format", "temperature", "top_p", "max_tokens", "seed")


async def recorded_candidates(store: RunStoreAPI, run_id: str) -> list[Candidate]:
    """The candidates a run recorded, with their texts (a call-only candidate's artifact is its JSON)."""
    candidates = []
    for event in await store.events(run_id, after=0, limit=MAX_EVENTS):
        if event.type != "candidate.recorded":
            continue
        payload = event.payload
        artifact = await store.get_artifact(payload.get("artifact_sha256") or "")
        raw = artifact.content if artifact is not None else b""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        calls = [ToolCall.model_validate(c) for c in payload.get("tool_calls") or []]
        if calls and text.startswith("{"):
            with contextlib.suppress(ValidationError):
                text = Candidate.model_validate_json(text).text
        candidates.append(
            Candidate(
                candidate_id=payload["candidate_id"],
                endpoint_id=payload["endpoint_id"],
                model=payload.get("model") or payload["endpoint_id"],
                text=text,
                tool_calls=calls,
                finish_reason=payload.get("finish_reason"),
                latency_ms=payload.get("latency_ms") or 0.0,
            )
        )
    return candidates


def _recorded_request(request: dict[str, Any]) -> ChatRequest:
    fields = {k: request[k] for k in _REQUEST_KEYS if request.get(k) is not None}
    if isinstance(request.get("conversation"), list):  # a Responses or Messages run keeps its translated conversation
        fields["messages"] = request["conversation"]
    if isinstance(request.get("sampling"), dict):  # a native run keeps its sampling apart
        fields.update({k: v for k, v in request["sampling"].items() if v is not None})
    return ChatRequest.model_validate({**fields, "model": "fusionkit/rejudge"})


async def rejudge(
    engine: FusionEngine,
    request: ChatRequest,
    candidates: list[Candidate],
    recorder: Recorder,
    *,
    run_id: str,
    judge: str,
    synthesizer: str,
    emit: Emit | None = None,
) -> FusionResult:
    """The one place that asks the engine to fuse given candidates again (text: judge and synthesizer;
    tools: the synthesizer's agent step)."""
    if request.tools:
        result = await engine.take_step(request, candidates, recorder, model_id=synthesizer, emit=emit)
    else:
        result = await engine.fuse_answers(
            request, candidates, recorder, judge_id=judge, synth_id=synthesizer, best=best_candidate, emit=emit
        )
    # The engine labels given candidates as trajectories; this run is a rejudge of a recorded run.
    result.mode = result.route = "rejudge"
    result.route_reasons = [f"rejudge of {run_id}'s recorded candidates"]
    return result


def rejudge_router(engine: FusionEngine, runs: RunService, store: RunStoreAPI, *, keepalive_s: float) -> APIRouter:
    router = APIRouter(prefix="/fusion/runs")

    @router.post(
        "/{run_id}/rejudge",
        response_model=None,
        responses=answers(FusedChatCompletion) | errors(400, 401, 404, 409, 413, 502, 503, 504),
    )
    @reads_body(RejudgeRequest)
    async def rejudge_run(run_id: str, request: Request, body: RejudgeRequest) -> Response:
        judge = choose_endpoint(engine.clients, body.judge_model, engine.config.judge, "judge_model")
        synthesizer = choose_endpoint(
            engine.clients, body.synthesizer_model, engine.config.synthesizer, "synthesizer_model"
        )
        record = await store.get_run(run_id) if is_valid_run_id(run_id) else None
        if record is None:
            raise not_found(f"no run '{run_id[:80]}'", code="run_not_found")
        candidates = await recorded_candidates(store, run_id)
        if not candidates:
            raise conflict(
                f"run '{run_id}' recorded no candidates to judge again (state {record.state}, mode {record.mode})",
                code="no_candidates",
            )
        try:
            chat = _recorded_request(record.request)
        except ValidationError:
            raise conflict(f"run '{run_id}' has no chat request to judge again", code="no_request") from None
        recorder = await runs.start(
            mode="rejudge",
            request={"rejudge_of": run_id, "judge_model": judge, "synthesizer_model": synthesizer},
            trace_id=request.headers.get("x-fusion-trace-id"),
        )
        log_context(request)["run_id"] = recorder.run_id
        run = StartedRun.of(
            runs,
            recorder,
            lambda emit: runs.launch_work(
                recorder,
                lambda: rejudge(
                    engine, chat, candidates, recorder, run_id=run_id, judge=judge, synthesizer=synthesizer, emit=emit
                ),
            ),
            keepalive_s=keepalive_s,
        )
        return await respond(request, run, model="fusionkit/rejudge", stream=False, include_usage=False)

    return router
