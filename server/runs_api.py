"""The native runs API: `/v1/fusion/runs` and its sub-resources, as fusionkit-server 0.1.1 answers.

    POST /v1/fusion/runs                        create and execute (Idempotency-Key); answers when the run
                                                ends or pauses for tool results; `Prefer: respond-async` -> 202
    GET  /v1/fusion/runs?limit=N                (addition) the most recent runs, newest first
    GET  /v1/fusion/runs/{run_id}               RunStateSummary
    GET  /v1/fusion/runs/{run_id}/inspect       RunInspection
    GET  /v1/fusion/runs/{run_id}/events        ?after=N (&limit=M, &wait=S: additions): {run_id, events,
                                                next_event_cursor}; `wait` long-polls until an event past N
                                                commits (in any replica), the run ends, or S seconds pass
    POST /v1/fusion/runs/{run_id}/tool-results  one ToolResultSubmission for a run in requires_action
    POST /v1/fusion/runs/{run_id}/cancel        (addition) cancel in-flight calls; the run ends `cancelled`
    GET  /v1/fusion/runs/{run_id}/artifacts/{sha256}   (addition) an artifact's content, its `uri`

The shapes are `server.protocol.native`'s; run ids are checked against their strict format before
the store is asked anything.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from bridge.errors import bad_request, conflict, not_found
from bridge.http import log_context, race_disconnect, reads_body
from bridge.openapi import answers, errors
from server.engine import FusionEngine
from server.native_http import NativeRoute, parse_native
from server.protocol.native import (
    CreateRunAnswer,
    FusionRunRequest,
    IdempotencyOutcome,
    NativeErrorResponse,
    RunEventPage,
    RunInspection,
    RunList,
    RunStateSummary,
    ToolResultSubmission,
)
from server.run_views import read_run, run_summary
from server.runs import RunService
from server.store import RunRecord, RunStoreAPI, is_valid_run_id

__all__ = ["runs_router"]

_IDEMPOTENCY_KEY = 255
_SHA256 = re.compile(r"[0-9a-f]{64}")
_LONGEST_POLL_S = 60.0  # an events long poll answers within this, events or not


def runs_router(engine: FusionEngine, runs: RunService, store: RunStoreAPI) -> APIRouter:
    router = APIRouter(prefix="/fusion/runs", route_class=NativeRoute)
    endpoints = {e.id: e for e in engine.config.endpoints}

    async def known_run(run_id: str) -> RunRecord:
        record = await store.get_run(run_id) if is_valid_run_id(run_id) else None
        if record is None:
            raise not_found(f"no run '{run_id[:80]}'", code="run_not_found")
        return record

    async def summary(record: RunRecord) -> RunStateSummary:
        cursors = await store.event_cursors([record.run_id])
        return run_summary(record, cursors.get(record.run_id, 0))

    async def inspection(run_id: str) -> RunInspection:
        record = await known_run(run_id)
        return await (await read_run(store, record, endpoints)).inspection(store)

    async def answer(run_id: str, outcome: IdempotencyOutcome, *, inspect: bool, status: int = 200) -> JSONResponse:
        """The create answer: flat state, and the inspection once the run has executed (or paused)."""
        seen = await inspection(run_id) if inspect else None
        head: RunInspection | RunStateSummary = seen or await summary(await known_run(run_id))
        created = CreateRunAnswer(
            **head.model_dump(include={"run_id", "trace_id", "state", "status", "event_cursor", "terminal_error"}),
            idempotency_outcome=outcome,
            inspection=seen,
        )
        headers = {"Location": f"/v1/fusion/runs/{run_id}"} if status == 202 else None
        return JSONResponse(created.wire(), status_code=status, headers=headers)

    async def settled(request: Request, run_id: str) -> None:
        # Until the run ends or pauses for tool results; a client that goes away stops the wait, not the run.
        await race_disconnect(request, runs.wait_settled(run_id))

    def native(*statuses: int) -> dict[int | str, dict[str, object]]:
        return errors(*statuses, model=NativeErrorResponse)

    found = native(401, 404)

    @router.post(
        "",
        response_model=None,
        responses=answers(CreateRunAnswer, description="The run, once it has ended or paused for tool results")
        | answers(CreateRunAnswer, status=202, description="Accepted (`Prefer: respond-async`); poll `Location`")
        | native(400, 401, 409, 422, 503)
        | errors(413),
    )
    @reads_body(FusionRunRequest, parse=parse_native)
    async def create_run(
        request: Request,
        body: FusionRunRequest,
        idempotency_key: Annotated[str | None, Header()] = None,
        prefer: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        key = idempotency_key
        if key is not None and not (0 < len(key) <= _IDEMPOTENCY_KEY and key.isprintable()):
            raise bad_request(
                f"Idempotency-Key must be 1-{_IDEMPOTENCY_KEY} printable characters",
                param="Idempotency-Key",
                code="invalid_idempotency_key",
            )
        respond_async = "respond-async" in (prefer or "").lower()
        chat, options = body.chat_request(), body.options()
        plan = engine.plan(chat, options)
        fingerprint = body.fingerprint()
        existing = await store.find_by_idempotency_key(key) if key is not None else None
        if existing is None:
            try:
                recorder = await runs.start(
                    mode=options.mode or engine.config.default_mode,
                    request=body.recorded(request_id=f"request_{fingerprint[7:31]}"),
                    trace_id=request.headers.get("x-fusion-trace-id"),
                    idempotency_key=key,
                    request_hash=fingerprint,
                )
            except runs.duplicate_errors:
                # Another request with the same key won the race: this one is its replay.
                existing = await store.find_by_idempotency_key(key or "")
                if existing is None:
                    raise
            else:
                log_context(request)["run_id"] = recorder.run_id
                runs.launch(engine, recorder, plan)
                if respond_async:
                    return await answer(recorder.run_id, "created", inspect=False, status=202)
                await settled(request, recorder.run_id)
                return await answer(recorder.run_id, "created", inspect=True)
        if existing.request_hash != fingerprint:
            raise conflict(
                "this Idempotency-Key was used with a different request body",
                code="idempotency_conflict",
                param="Idempotency-Key",
            )
        log_context(request)["run_id"] = existing.run_id
        if respond_async:
            return await answer(existing.run_id, "replayed", inspect=False)
        # A retry while the original still runs gets what the original's caller gets, once there is an answer.
        await settled(request, existing.run_id)
        return await answer(existing.run_id, "replayed", inspect=True)

    @router.get("", response_model=None, responses=answers(RunList) | native(401, 422))
    async def list_runs(limit: int = Query(default=20, ge=1, le=500)) -> dict[str, object]:
        records = await store.list_runs(limit=limit + 1)
        cursors = await store.event_cursors([r.run_id for r in records[:limit]])
        data = [run_summary(r, cursors.get(r.run_id, 0)).wire() for r in records[:limit]]
        return {"object": "list", "data": data, "has_more": len(records) > limit}

    @router.get("/{run_id}", response_model=None, responses=answers(RunStateSummary) | found)
    async def get_run(record: RunRecord = Depends(known_run)) -> dict[str, object]:
        return (await summary(record)).wire()

    @router.get("/{run_id}/inspect", response_model=None, responses=answers(RunInspection) | found)
    async def inspect(run_id: str) -> dict[str, object]:
        return (await inspection(run_id)).wire()

    @router.get("/{run_id}/events", response_model=None, responses=answers(RunEventPage) | native(401, 404, 422))
    async def events(
        request: Request,
        record: RunRecord = Depends(known_run),
        after: int | None = Query(default=None, ge=0),
        limit: int = Query(default=1000, ge=1, le=1000),
        wait: float | None = Query(default=None, ge=0, le=_LONGEST_POLL_S),
    ) -> dict[str, object]:
        if wait:
            await race_disconnect(request, store.wait_for_events(record.run_id, after or 0, wait))
            record = await known_run(record.run_id)
        page: RunEventPage = (await read_run(store, record, endpoints)).page(after or 0, limit)
        if after is None and not page.events:
            page.next_event_cursor = None
        return page.wire()

    @router.post(
        "/{run_id}/tool-results",
        response_model=None,
        responses=answers(RunInspection) | native(401, 404, 409, 422) | errors(413),
    )
    @reads_body(ToolResultSubmission, parse=parse_native)
    async def tool_results(
        body: ToolResultSubmission,
        # The run is looked up before the body is read: an unknown run is a 404 whatever was sent.
        record: RunRecord = Depends(known_run),
    ) -> dict[str, object]:
        await runs.submit_tool_result(record, body)
        return (await inspection(record.run_id)).wire()

    @router.post("/{run_id}/cancel", response_model=None, responses=answers(RunStateSummary) | native(401, 404, 409))
    async def cancel(record: RunRecord = Depends(known_run)) -> dict[str, object]:
        run_id = record.run_id
        if await runs.cancel(run_id, owner_id=record.owner_id):
            record = await known_run(run_id)
        elif not record.finished:
            where = "this router" if store.relay is None else "any router (it expires when its lease lapses)"
            raise conflict(f"run '{run_id}' is not executing in {where}", code="run_not_active")
        return (await summary(record)).wire()

    @router.get(
        "/{run_id}/artifacts/{sha256}",
        response_model=None,
        responses=answers(None, description="The artifact's content, in its own media type", media_type="*/*") | found,
    )
    async def artifact(sha256: str, record: RunRecord = Depends(known_run)) -> Response:
        stored = await store.get_artifact(sha256) if _SHA256.fullmatch(sha256) else None
        if stored is None:
            raise not_found(f"no artifact '{sha256[:80]}'", code="artifact_not_found")
        return Response(stored.content, media_type=stored.media_type)

    return router
