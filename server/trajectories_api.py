"""`POST /v1/fusion/trajectories:fuse` and `POST /v1/fusion/trajectory:step`, as the seed answers.

`:fuse` has the judge compare agent trajectories and the synthesizer write the final output;
`:step` has the judge model take the next agent step itself, the trajectories (if any) as
reference. When the model writing the answer gives nothing, either answers with the best verified
trajectory's output. Both are recorded as runs; the synthesis id is the run id.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError

from bridge.errors import bad_request
from bridge.http import log_context, reads_body, validation_error
from bridge.openapi import answers, errors
from bridge.protocol import ChatRequest
from server.completions import respond
from server.doors.launch import StartedRun
from server.engine import FusionEngine
from server.engine.planning import choose_endpoint
from server.native_http import NativeRoute, parse_native
from server.protocol.chat import FusedChatCompletion
from server.protocol.native import NativeErrorResponse
from server.protocol.trajectories import FuseTrajectoriesRequest, StepTrajectoriesRequest, TrajectorySynthesis
from server.runs import RunRecorder, RunService
from server.trajectories import best_verified, synthesis_record, to_candidates

__all__ = ["trajectories_router"]


def trajectories_router(engine: FusionEngine, runs: RunService, *, keepalive_s: float) -> APIRouter:
    router = APIRouter(prefix="/fusion", route_class=NativeRoute)

    def endpoint_id(value: str | None, default: str, param: str) -> str:
        return choose_endpoint(engine.clients, value, default, param, code="unknown_model")  # the seed's code

    async def recorded(request: Request, mode: str, body: BaseModel) -> RunRecorder:
        """A run for this request, recorded with the body as the client sent it."""
        recorder = await runs.start(
            mode=mode,
            request=body.model_dump(mode="json", exclude_none=True),
            trace_id=request.headers.get("x-fusion-trace-id"),
        )
        log_context(request)["run_id"] = recorder.run_id
        return recorder

    failures = errors(400, 401, 404, 409, 422, 502, 503, 504, model=NativeErrorResponse) | errors(413)

    @router.post(
        "/trajectories:fuse", response_model=None, responses=answers(TrajectorySynthesis, stream=True) | failures
    )
    @reads_body(FuseTrajectoriesRequest, parse=parse_native)
    async def fuse(request: Request, body: FuseTrajectoriesRequest) -> dict[str, Any] | Response:
        if not body.trajectories:
            raise bad_request("At least one trajectory is required.", param="trajectories", code="no_trajectories")
        judge = endpoint_id(body.judge_model, engine.config.judge, "judge_model")
        synth = endpoint_id(body.synthesizer_model, engine.config.synthesizer, "synthesizer_model")
        chat = ChatRequest(model="fusionkit/trajectories", messages=body.messages)
        recorder = await recorded(request, "trajectories", body)
        candidates = to_candidates(body.trajectories)
        best = best_verified(body.trajectories)
        run = StartedRun.of(
            runs,
            recorder,
            lambda emit: runs.launch_work(
                recorder,
                lambda: engine.fuse_answers(
                    chat, candidates, recorder, judge_id=judge, synth_id=synth, best=best, emit=emit
                ),
            ),
            keepalive_s=keepalive_s,
        )
        if body.stream:
            # The final output as chat chunks while the synthesizer writes it; the whole record is the run's
            # inspection (the run id is the synthesis id).
            return await respond(request, run, model="fusionkit/trajectories", stream=True, include_usage=False)
        result = await run.result(request)
        answer = synthesis_record(
            result, judge=judge, synth=synth, synthesis_id=recorder.run_id, trajectories=body.trajectories
        )
        return answer.wire()

    @router.post(
        "/trajectory:step", response_model=None, responses=answers(FusedChatCompletion, stream=True) | failures
    )
    @reads_body(StepTrajectoriesRequest, parse=parse_native)
    async def step(request: Request, body: StepTrajectoriesRequest) -> Response:
        judge = endpoint_id(body.judge_model, engine.config.judge, "judge_model")
        fields = body.model_dump(exclude={"trajectories", "judge_model", "model"}, exclude_none=True)
        fields["model"] = judge
        try:
            chat = ChatRequest.model_validate(fields)
        except ValidationError as exc:
            # The body is valid; what the OpenAI fields say together is not (a tool_choice naming no tool): 400.
            raise validation_error(exc, fields) from None
        recorder = await recorded(request, "step", body)
        candidates = to_candidates(body.trajectories)
        best = best_verified(body.trajectories)
        run = StartedRun.of(
            runs,
            recorder,
            lambda emit: runs.launch_work(
                recorder, lambda: engine.take_step(chat, candidates, recorder, model_id=judge, best=best, emit=emit)
            ),
            keepalive_s=keepalive_s,
        )
        return await respond(request, run, model=body.model, stream=chat.stream, include_usage=chat.wants_usage_chunk)

    return router
