"""The native runs API (SPEC §5): `/v1/fusion/runs` and its sub-resources.

    POST /v1/fusion/runs                      create (Idempotency-Key; Prefer: respond-async -> 202)
    GET  /v1/fusion/runs?limit=N              the most recent runs, newest first
    GET  /v1/fusion/runs/{run_id}             summary
    GET  /v1/fusion/runs/{run_id}/inspect     candidates, judge record, final output, error
    GET  /v1/fusion/runs/{run_id}/events      ?after=N&limit=M, paged by next_event_cursor
    POST /v1/fusion/runs/{run_id}/cancel      cancel in-flight calls; the run ends `cancelled`
    POST /v1/fusion/runs/{run_id}/tool-results  feed an external tool result to a paused run

Run ids are checked against their strict format before the store is asked anything.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from bridge.errors import APIError, bad_request, not_found
from bridge.http import log_context, parse_body
from bridge.protocol import ChatMessage, ChatRequest, Tool
from server.engine import FusionEngine
from server.protocol import FusionOptions, ToolExecution
from server.run_views import inspect_run, run_summary
from server.runs import RunService
from server.store import RunRecord, RunStore, is_valid_run_id

__all__ = ["FusionRunRequest", "runs_router"]


class Sampling(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None


class FusionRunRequest(BaseModel):
    """The fusion-run-request body. Contract metadata fields are accepted and kept, never required."""

    model_config = ConfigDict(extra="allow")

    messages: list[ChatMessage] = Field(min_length=1)
    mode: Literal["single", "self", "panel", "router"] | None = None
    sampling: Sampling | None = None
    sample_count: int | None = Field(default=None, ge=1, le=32)
    verify: bool = False
    requested_models: list[str] | None = None
    tool_policy: Literal["disabled", "external_pause"] = "disabled"
    tool_execution: ToolExecution | None = None
    tools: list[Tool] | None = None
    tool_choice: Any = None
    contract_version: str | None = None
    request_id: str | None = None
    metadata: dict[str, Any] | None = None

    def chat_request(self) -> ChatRequest:
        sampling = self.sampling.model_dump(exclude_none=True) if self.sampling else {}
        data: dict[str, Any] = {"model": "fusionkit/" + (self.mode or "router"), "messages": self.messages, **sampling}
        if self.tools:
            data["tools"] = self.tools
            if self.tool_choice is not None:
                data["tool_choice"] = self.tool_choice
        return ChatRequest.model_validate(data)

    def options(self) -> FusionOptions:
        tools = self.tool_execution
        if self.tool_policy == "external_pause":
            tools = (tools or ToolExecution()).model_copy(update={"mode": "external"})
        return FusionOptions(
            mode=self.mode,
            panel_models=self.requested_models,
            sample_count=self.sample_count,
            verify=self.verify,
            tool_execution=tools,
        )

    def fingerprint(self) -> str:
        canonical = json.dumps(self.model_dump(mode="json", exclude_none=True), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


_IDEMPOTENCY_KEY = 255


def runs_router(engine: FusionEngine, runs: RunService, store: RunStore) -> APIRouter:
    router = APIRouter(prefix="/fusion/runs")

    async def known_run(run_id: str) -> RunRecord:
        record = await store.get_run(run_id) if is_valid_run_id(run_id) else None
        if record is None:
            raise not_found(f"no run '{run_id[:80]}'", code="run_not_found")
        return record

    @router.post("", response_model=None)
    async def create_run(request: Request) -> JSONResponse:
        body = await parse_body(request, FusionRunRequest)
        key = request.headers.get("idempotency-key")
        if key is not None and not (0 < len(key) <= _IDEMPOTENCY_KEY and key.isprintable()):
            raise bad_request(
                f"Idempotency-Key must be 1-{_IDEMPOTENCY_KEY} printable characters",
                param="Idempotency-Key",
                code="invalid_idempotency_key",
            )
        respond_async = "respond-async" in request.headers.get("prefer", "").lower()
        chat, options = body.chat_request(), body.options()
        plan = engine.plan(chat, options)
        fingerprint = body.fingerprint()
        if key is not None:
            existing = await store.find_by_idempotency_key(key)
            if existing is not None:
                return await _replay(existing, fingerprint)
        try:
            recorder = await runs.start(
                mode=options.mode or engine.config.default_mode,
                request=body.model_dump(mode="json", exclude_none=True),
                trace_id=request.headers.get("x-fusion-trace-id"),
                idempotency_key=key,
                request_hash=fingerprint,
            )
        except runs.duplicate_errors:
            # Another request with the same key won the race; answer as its replay.
            existing = await store.find_by_idempotency_key(key or "")
            if existing is None:
                raise
            return await _replay(existing, fingerprint)
        log_context(request)["run_id"] = recorder.run_id
        task = runs.launch(engine, recorder, plan)
        if respond_async:
            record = await known_run(recorder.run_id)
            return JSONResponse(
                {"outcome": "created", "run": run_summary(record)},
                status_code=202,
                headers={"Location": f"/v1/fusion/runs/{recorder.run_id}"},
            )
        await runs.wait(task)
        record = await known_run(recorder.run_id)
        return JSONResponse({"outcome": "created", "run": run_summary(record)}, status_code=201)

    async def _replay(existing: Any, fingerprint: str) -> JSONResponse:
        if existing.request_hash != fingerprint:
            raise APIError(
                409,
                "this Idempotency-Key was used with a different request body",
                type="invalid_request_error",
                code="idempotency_conflict",
                param="Idempotency-Key",
            )
        return JSONResponse({"outcome": "replayed", "run": run_summary(existing)}, status_code=200)

    @router.get("")
    async def list_runs(limit: int = 20) -> dict[str, Any]:
        if not 1 <= limit <= 500:
            raise bad_request("'limit' must be between 1 and 500", param="limit")
        return {"object": "list", "data": [run_summary(r) for r in await store.list_runs(limit=limit)]}

    @router.get("/{run_id}")
    async def get_run(run_id: str) -> dict[str, Any]:
        return run_summary(await known_run(run_id))

    @router.get("/{run_id}/inspect")
    async def inspect(run_id: str) -> dict[str, Any]:
        record = await known_run(run_id)
        return await inspect_run(store, record, pending=runs.pending_action(run_id))

    @router.get("/{run_id}/events")
    async def events(run_id: str, after: int = 0, limit: int = 100) -> dict[str, Any]:
        await known_run(run_id)
        if after < 0 or not 1 <= limit <= 1000:
            raise bad_request("'after' must be >= 0 and 'limit' between 1 and 1000", param="limit")
        page = await store.events(run_id, after=after, limit=limit + 1)
        more = len(page) > limit
        page = page[:limit]
        cursor = page[-1].seq if page else after
        return {
            "object": "list",
            "data": [e.model_dump(mode="json") for e in page],
            "next_event_cursor": cursor,
            "has_more": more,
        }

    @router.post("/{run_id}/cancel")
    async def cancel(run_id: str) -> dict[str, Any]:
        record = await known_run(run_id)
        if await runs.cancel(run_id):
            record = await known_run(run_id)
        elif record.state not in ("completed", "failed", "cancelled", "expired"):
            raise APIError(
                409,
                f"run '{run_id}' is not executing in this router",
                type="invalid_request_error",
                code="run_not_active",
            )
        return run_summary(record)

    @router.post("/{run_id}/tool-results")
    async def tool_results(run_id: str, request: Request) -> dict[str, Any]:
        record = await known_run(run_id)
        return await runs.submit_tool_results(record, await request.body())

    return router
