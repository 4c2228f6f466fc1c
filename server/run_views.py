"""Reading a run back, in the native API's shapes (`server.protocol.native`): summary, inspection, events.

    summary = run_summary(record, cursor)                         # RunStateSummary
    view = await read_run(store, record, endpoints)               # .inspection(), .events
    page = view.page(after=0, limit=100)                          # RunEventPage

Everything comes from the run's row, its events and its artifacts alone, so it works for any past
run, in this router or after a restart. Our event log is finer than the seed's: each event of ours
becomes one event of the seed's vocabulary (`run.state` → `state_changed`, `model_call.*` →
`model_call_recorded`, `candidate.dropped` → `error_recorded`, ...), with the seed's payload and
ours beside it under `payload.fusionkit`; every event carries the run's state at that point.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.endpoint import EndpointConfig
from server.protocol.native import (
    STATUS_OF_STATE,
    ArtifactKind,
    ArtifactRef,
    CandidateInspection,
    FusionRunEvent,
    JudgeSynthesisRecord,
    NativeRunError,
    RunEventPage,
    RunEventType,
    RunInspection,
    RunStateSummary,
    ToolCallPlan,
    ToolPausePlaceholder,
    canonical_hash,
    contract,
    run_error,
    sha256_ref,
)
from server.store import EventRecord, RunRecord, RunStoreAPI

__all__ = ["DOOR_EVENT", "RunView", "read_run", "run_summary", "terminal_error"]

MAX_EVENTS = 10_000
# The event that says which front door a run came through (chat.completions, responses, messages).
DOOR_EVENT = "run.door"
# One event of ours as the seed's: its event_type, its id fields, its seed-shaped payload.
_Seed = tuple[RunEventType, dict[str, Any], dict[str, Any]]
_SIDE_EFFECTS = {"none", "read_only", "writes_workspace", "network", "tool_execution"}


def terminal_error(record: RunRecord) -> NativeRunError | None:
    """Why a finished run did not complete, as the seed's error record; None while it runs or once completed."""
    summary = record.summary or {}
    reason = record.terminal_reason or record.state
    if record.state == "failed":
        error = summary.get("error") or {}
        # A failure's own reason is its error code (the seed's name for it), unless the run recorded a finer one.
        finer = None if reason == "failed" else reason
        return run_error(summary.get("status") or 500, error.get("code"), error.get("message"), finer)
    if record.state == "cancelled":
        return NativeRunError(
            error_kind="none", error_code="cancelled", retryable=False, owner="fusionkit", terminal_reason=reason
        )
    if record.state == "expired":
        return NativeRunError(
            error_kind="internal_error",
            error_code="run_expired",
            retryable=True,
            owner="fusionkit",
            terminal_reason=reason,
            message="the router that executed this run stopped before it finished; submit it again",
        )
    return None


def _final_message(record: RunRecord) -> dict[str, Any] | None:
    final = (record.summary or {}).get("final_output")
    return final if isinstance(final, dict) else None


def run_summary(record: RunRecord, cursor: int) -> RunStateSummary:
    """The seed's RunStateSummary of a run; `cursor` is the seq of its latest event."""
    summary = record.summary or {}
    final = _final_message(record)
    error = terminal_error(record)
    return RunStateSummary(
        run_id=record.run_id,
        trace_id=record.trace_id or "",
        state=record.state,
        status=STATUS_OF_STATE[record.state],
        event_cursor=cursor,
        idempotency_key=record.idempotency_key,
        request_hash=record.request_hash,
        terminal_error=error,
        terminal_reason=error.terminal_reason if error else record.terminal_reason,
        final_output=final.get("content") if final else None,
        fusionkit={
            "mode": record.mode,
            "route": summary.get("route"),
            "models": summary.get("models"),
            "decision": summary.get("decision"),
            "final_message": final,
            "usage": summary.get("usage"),
            "cost_estimate": summary.get("cost_estimate"),
            "latency_ms": summary.get("latency_ms"),
            "failed_members": summary.get("failed_members"),
            "created_at": record.created_at,
            "updated_at": record.updated_at,
        },
    )


def _artifact(run_id: str, sha256: str, kind: ArtifactKind = "transcript") -> ArtifactRef:
    """A stored artifact as the seed refers to one; `uri` is the route that serves its content."""
    return ArtifactRef(
        artifact_id=f"artifact_{sha256[:32]}",
        kind=kind,
        hash=f"sha256:{sha256}",
        uri=f"/v1/fusion/runs/{run_id}/artifacts/{sha256}",
        redaction_status="raw",
    )


def _turns(request: dict[str, Any], body: dict[str, Any]) -> list[Any]:
    """A run's conversation: a chat run's `messages`; a Responses or Messages run's wire `body` recorded
    beside the conversation it passed on (when it kept one), its system text (`instructions`, `system`) first."""
    if body is request:
        return list(request.get("messages") or [])
    system = body.get("instructions") or body.get("system")
    turns = request.get("conversation") or body.get("messages") or body.get("input") or []
    if isinstance(turns, str):
        turns = [{"role": "user", "content": turns}]
    return [*([{"role": "system", "content": system}] if system else []), *turns]


def _seed_request(record: RunRecord) -> dict[str, Any]:
    """The run's request as `run_queued` shows it: a native run's as recorded, anything else's in that shape."""
    request = record.request or {}
    if "schema" in request:
        return request
    body = request["body"] if isinstance(request.get("body"), dict) else request
    messages = [
        {
            "role": m.get("role"),
            "content": m.get("content") if isinstance(m.get("content"), str) else json.dumps(m.get("content")),
        }
        for m in _turns(request, body)
        if isinstance(m, dict) and m.get("role")
    ]
    fusion = body.get("fusion") or {}
    sampling = {k: body.get(k) for k in ("temperature", "top_p", "max_tokens", "seed")}
    if sampling["max_tokens"] is None:
        sampling["max_tokens"] = body.get("max_output_tokens")  # the Responses API's name for it
    return {
        **contract("fusion-run-request.v1", record.created_at),
        "request_id": record.run_id,
        "mode": record.mode or "router",
        "messages": messages,
        "sampling": sampling,
        "verify": bool(fusion.get("verify")),
        "requested_models": fusion.get("panel_models"),
        "sample_count": fusion.get("sample_count"),
        "tool_policy": None,
        "request_hash": None,
        "fusionkit": request,
    }


@dataclass
class _Call:
    """One model call as the events tell it."""

    number: int
    role: str
    endpoint_id: str
    candidate_id: str | None
    started: str
    outcome: str = "running"
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunView:
    """A run read back: its events in the seed's vocabulary, and what its inspection needs."""

    record: RunRecord
    endpoints: Mapping[str, EndpointConfig]
    events: list[FusionRunEvent] = field(default_factory=list)
    state: str = "queued"
    candidates: list[CandidateInspection] = field(default_factory=list)
    details: list[dict[str, Any]] = field(default_factory=list)  # every member: answer or drop reason
    calls: dict[int, _Call] = field(default_factory=dict)
    artifacts: dict[str, ArtifactRef] = field(default_factory=dict)
    judge: dict[str, Any] | None = None
    judge_call: str | None = None
    decision: dict[str, Any] | None = None
    verification: dict[str, Any] | None = None
    pending: dict[str, ToolPausePlaceholder] = field(default_factory=dict)
    phases: list[dict[str, Any]] = field(default_factory=list)
    ranking: list[str] = field(default_factory=list)  # the judge's, known before the candidates' events
    responses: dict[int, str] = field(default_factory=dict)  # call number -> sha256 of what it answered
    door: str | None = None
    packing: list[dict[str, Any]] = field(default_factory=list)  # each `context.packed`: prompt and packing

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def cursor(self) -> int:
        return self.events[-1].event_seq if self.events else 0

    def call_id(self, number: int) -> str:
        # The seed's model_call_id: the run and the call's number (its trace span is in the call's payload).
        return f"{self.run_id}.{number}"

    # -- one event of ours, as the seed's -------------------------------------------------------

    def feed(self, event: EventRecord) -> None:
        payload = event.payload
        kind: RunEventType = "state_changed"
        ids: dict[str, str | None] = {}
        seed: dict[str, Any] = {}
        handler = getattr(self, "_on_" + event.type.replace(".", "_"), None)
        if handler is not None:
            kind, ids, seed = handler(event, payload)
        self.events.append(
            FusionRunEvent(
                event_seq=event.seq,
                run_id=self.run_id,
                trace_id=self.record.trace_id or "",
                state=self.state,
                status=STATUS_OF_STATE[self.state],
                created_at=event.ts,
                event_type=kind,
                payload={**seed, "fusionkit": {"type": event.type, "payload": payload}},
                **ids,
            )
        )

    def _on_run_created(self, event: EventRecord, payload: dict[str, Any]) -> _Seed:
        self.state = str(payload.get("state") or "queued")
        ids = {"idempotency_key": self.record.idempotency_key, "request_hash": self.record.request_hash}
        return "run_queued", ids, {"request": _seed_request(self.record)}

    def _on_run_door(self, event: EventRecord, payload: dict[str, Any]) -> _Seed:
        self.door = payload.get("door")
        return "state_changed", {}, {}

    def _on_run_expired(self, event: EventRecord, payload: dict[str, Any]) -> _Seed:
        self.state = "expired"
        self.phases.append({"state": "expired", "seq": event.seq, "ts": event.ts})
        return "state_changed", {}, {"terminal_reason": payload.get("reason")}

    def _on_run_state(self, event: EventRecord, payload: dict[str, Any]) -> _Seed:
        previous, self.state = self.state, str(payload.get("state"))
        self.phases.append({"state": self.state, "seq": event.seq, "ts": event.ts})
        if self.state == "requires_action":
            pause = next(iter(self.pending.values()), None)
            ids = {"candidate_id": pause.candidate_id, "tool_call_id": pause.tool_call_id} if pause else {}
            return "requires_action", ids, {"requires_action": pause.wire() if pause else None}
        if self.state == "generating" and previous == "requires_action":
            return "run_resumed", {}, {"remaining_pending_tool_calls": len(self.pending)}
        if self.state == "completed":
            return "fusion_recorded", {}, {"fusion_record": self._fusion_record(event)}
        if self.state == "failed":
            error = terminal_error(self.record) if self.record.state == "failed" else None
            return "error_recorded", {}, {"error": error.wire() if error else payload.get("error")}
        if self.state in ("cancelled", "expired"):
            return "state_changed", {}, {"terminal_reason": payload.get("reason") or self.record.terminal_reason}
        return "state_changed", {}, {}

    def _on_model_call_started(self, event: EventRecord, payload: dict[str, Any]) -> _Seed:
        call = _Call(
            number=int(payload.get("call", 0)),
            role=str(payload.get("role")),
            endpoint_id=str(payload.get("endpoint_id")),
            candidate_id=payload.get("candidate_id"),
            started=event.ts,
        )
        self.calls[call.number] = call
        return self._call_event(call, event)

    def _on_model_call_completed(self, event: EventRecord, payload: dict[str, Any]) -> _Seed:
        call = self.calls.get(int(payload.get("call", 0)))
        if call is None:
            return "model_call_recorded", {}, {}
        call.outcome = event.type.split(".")[1]
        call.payload = payload
        if call.role == "judge":
            self.judge_call = self.call_id(call.number)
        return self._call_event(call, event)

    _on_model_call_failed = _on_model_call_completed

    def _call_event(self, call: _Call, event: EventRecord) -> _Seed:
        ids = {"candidate_id": call.candidate_id, "model_call_id": self.call_id(call.number)}
        return "model_call_recorded", ids, {"model_call_record": self._call_record(call, event.ts)}

    def _provider_metadata(self, call: _Call) -> dict[str, Any]:
        usage = call.payload.get("usage")
        endpoint = self.endpoints.get(call.endpoint_id)
        meta: dict[str, Any] = {"unknown_usage": usage is None, "unknown_cost": True, "cost_estimate": None}
        if endpoint is not None:
            pricing = endpoint.pricing
            cost = None
            if usage and pricing.input_per_1m_tokens is not None and pricing.output_per_1m_tokens is not None:
                cost = (
                    usage.get("prompt_tokens", 0) * pricing.input_per_1m_tokens
                    + usage.get("completion_tokens", 0) * pricing.output_per_1m_tokens
                ) / 1_000_000
            meta.update(
                provider=endpoint.provider,
                endpoint_id=endpoint.id,
                model=endpoint.model,
                max_context=None,
                structured_output=endpoint.capabilities.structured_output,
                tool_support=endpoint.capabilities.tool_calls,
                timeout_s=endpoint.timeout_s,
                pricing=pricing.model_dump(),
                cost_estimate=cost,
                unknown_cost=cost is None,
            )
        return {**meta, "finish_reason": call.payload.get("finish_reason"), "role": call.role}

    def _call_record(self, call: _Call, ts: str) -> dict[str, Any]:
        messages = [m for m in _seed_request(self.record).get("messages", []) if isinstance(m, dict)]
        failed = call.outcome == "failed"
        error = None
        if failed:
            kind = run_error(call.payload.get("status"), None, None).error_kind
            error = {"kind": kind, "message": call.payload.get("reason"), "retryable": None}
        endpoint = self.endpoints.get(call.endpoint_id)
        return {
            **contract("model-call-record.v1", call.started),
            "call_id": self.call_id(call.number),
            "endpoint_id": call.endpoint_id,
            "model": endpoint.model if endpoint else call.endpoint_id,
            "request_hash": canonical_hash({"run_id": self.run_id, "call": call.number, "messages": messages}),
            "status": {"running": "running", "completed": "succeeded", "failed": "failed"}[call.outcome],
            "messages": messages,
            "side_effects": "none",
            "started_at": call.started,
            "provider_request_id": None,
            "response_hash": f"sha256:{self.responses[call.number]}" if call.number in self.responses else None,
            "finished_at": None if call.outcome == "running" else ts,
            "latency_ms": call.payload.get("latency_ms"),
            "usage": call.payload.get("usage"),
            "output_text": None,
            "error": error,
            "metadata": self._provider_metadata(call) if call.outcome != "running" else None,
        }

    def _on_candidate_recorded(self, event: EventRecord, payload: dict[str, Any]) -> _Seed:
        candidate_id = str(payload.get("candidate_id"))
        endpoint_id = str(payload.get("endpoint_id"))
        sha = payload.get("artifact_sha256")
        artifact = _artifact(self.run_id, sha) if sha else None
        if artifact is not None:
            self.artifacts[artifact.artifact_id] = artifact
        call = next(
            (c for c in reversed(self.calls.values()) if c.candidate_id == candidate_id and c.outcome == "completed"),
            None,
        )
        rank = self.ranking.index(candidate_id) + 1 if candidate_id in self.ranking else None
        inspection = CandidateInspection(
            candidate_id=candidate_id,
            model_id=endpoint_id,
            source_candidate_id=f"{endpoint_id}:{len(self.candidates)}",
            model_call_id=self.call_id(call.number) if call else None,
            artifact=artifact,
            score=float(len(self.ranking) - rank + 1) if rank else None,
            rank=rank,
        )
        self.candidates.append(inspection)
        self.details.append({**payload, "status": "ok", "rank": rank})
        ids = {
            "candidate_id": candidate_id,
            "model_call_id": inspection.model_call_id,
            "artifact_id": artifact.artifact_id if artifact else None,
        }
        seed = {
            "candidate_id": candidate_id,
            "source_candidate_id": inspection.source_candidate_id,
            "model_id": endpoint_id,
            "rank": rank,
            "score": inspection.score,
            "artifact": artifact.wire() if artifact else None,
            "ordinal": len(self.candidates) - 1,
        }
        return "candidate_recorded", ids, {"candidate": seed}

    def _error_event(self, code: str, message: str | None, status: int | None = None, **ids: str | None) -> _Seed:
        error = run_error(status, code, message, terminal_reason=code)
        return "error_recorded", ids, {"error": error.wire()}

    def _on_candidate_dropped(self, event: EventRecord, payload: dict[str, Any]) -> _Seed:
        self.details.append({**payload, "status": "dropped", "rank": None})
        return self._error_event(
            "candidate_dropped", payload.get("reason"), 502, candidate_id=payload.get("candidate_id")
        )

    def _on_budget_exceeded(self, event: EventRecord, payload: dict[str, Any]) -> _Seed:
        return self._error_event("budget_exceeded", f"budget {payload.get('budget')} exceeded: {payload.get('cost')}")

    def _on_synthesis_empty(self, event: EventRecord, payload: dict[str, Any]) -> _Seed:
        reason = str(payload.get("reason") or "empty_synthesis")
        return self._error_event(reason.split(":")[0], reason)

    def _on_judge_record(self, event: EventRecord, payload: dict[str, Any]) -> _Seed:
        self.judge = payload
        analysis = payload.get("analysis") or {}
        self.ranking = [c for c in analysis.get("ranking") or [] if isinstance(c, str)]
        sha = payload.get("raw_artifact_sha256")
        if not sha:
            return "state_changed", {}, {}
        artifact = _artifact(self.run_id, sha, "log")
        self.artifacts[artifact.artifact_id] = artifact
        return "artifact_recorded", {"artifact_id": artifact.artifact_id}, {"artifact": artifact.wire()}

    def _on_synthesis_completed(self, event: EventRecord, payload: dict[str, Any]) -> _Seed:
        sha = payload.get("artifact_sha256")
        if not sha:
            return "state_changed", {}, {}
        artifact = _artifact(self.run_id, sha)
        self.artifacts[artifact.artifact_id] = artifact
        return "artifact_recorded", {"artifact_id": artifact.artifact_id}, {"artifact": artifact.wire()}

    def _on_context_packed(self, event: EventRecord, payload: dict[str, Any]) -> _Seed:
        self.packing.append(payload)
        return "state_changed", {}, {}

    def _on_verification_completed(self, event: EventRecord, payload: dict[str, Any]) -> _Seed:
        self.verification = payload
        return "state_changed", {}, {}

    def _on_decision(self, event: EventRecord, payload: dict[str, Any]) -> _Seed:
        self.decision = payload
        record = self.synthesis_record()
        if record is None:
            return "state_changed", {}, {}
        return "judge_synthesis_recorded", {}, {"judge_synthesis_record": record.wire()}

    def _on_tool_plan(self, event: EventRecord, payload: dict[str, Any]) -> _Seed:
        candidate_id = str(payload.get("candidate_id"))
        first: ToolPausePlaceholder | None = None
        for call in payload.get("calls") or []:
            effects = str(call.get("side_effects"))
            plan = ToolCallPlan(
                created_at=event.ts,
                plan_id=f"plan_{call.get('tool_call_id')}",
                tool_name=str(call.get("name")),
                arguments_hash=f"sha256:{call.get('arguments_sha256')}",
                side_effects=effects if effects in _SIDE_EFFECTS else "unknown",
            )
            cache_key = canonical_hash([plan.tool_name, plan.arguments_hash]) if effects == "read_only" else None
            pause = ToolPausePlaceholder(
                candidate_id=candidate_id,
                tool_call_id=str(call.get("tool_call_id")),
                plan=plan,
                policy_cache_key=cache_key,
            )
            if not call.get("deduplicated"):
                self.pending[pause.tool_call_id] = pause
            first = first or pause
        if first is None:
            return "tool_call_planned", {"candidate_id": candidate_id}, {}
        ids = {"candidate_id": candidate_id, "tool_call_id": first.tool_call_id}
        seed = {"tool_call_plan": first.plan.wire() if first.plan else None, "policy_cache_key": first.policy_cache_key}
        return "tool_call_planned", ids, seed

    def _on_tool_result(self, event: EventRecord, payload: dict[str, Any]) -> _Seed:
        tool_call_id = str(payload.get("tool_call_id"))
        self.pending.pop(tool_call_id, None)
        record = {
            **contract("tool-execution-record.v1", event.ts),
            "execution_id": f"execution_{tool_call_id}",
            "plan_id": f"plan_{tool_call_id}",
            "status": payload.get("status") or "succeeded",
            "output_hash": f"sha256:{payload['output_sha256']}" if payload.get("output_sha256") else None,
            "error": None,
        }
        ids = {"candidate_id": payload.get("candidate_id"), "tool_call_id": tool_call_id}
        return "tool_execution_recorded", ids, {"tool_execution_record": record}

    # -- what the events add up to --------------------------------------------------------------

    def final_text(self) -> str | None:
        final = _final_message(self.record)
        return final.get("content") if final else None

    def synthesis_record(self) -> JudgeSynthesisRecord | None:
        """The judge-synthesis record, once a judge has compared the candidates (as in the seed)."""
        if self.judge is None or self.decision is None:
            return None
        analysis = self.judge.get("analysis") or {}
        ranks = {cid: i + 1 for i, cid in enumerate(self.ranking)}
        final = self.final_text() or ""
        final_artifact = self._final_artifact()
        return JudgeSynthesisRecord(
            synthesis_id=self.run_id,
            input_candidate_ids=[c.candidate_id for c in self.candidates],
            status="succeeded",
            decision="synthesize" if self.decision.get("type") == "synthesize" else "select_candidate",
            final_output=final,
            judge_model_call_id=self.judge_call,
            selected_candidate_id=self.decision.get("selected_candidate_id"),
            rationale=analysis.get("rationale") or "; ".join(analysis.get("consensus") or []),
            score=None,
            metrics={
                "candidate_contributions": [
                    {
                        "candidate_id": c.candidate_id,
                        "model_id": c.model_id,
                        "rank": c.rank,
                        "score": c.score,
                        "reason": "included as judge synthesis evidence",
                    }
                    for c in self.candidates
                ],
                "candidate_rejections": [
                    {"candidate_id": None, "reason": r} for r in analysis.get("likely_errors") or []
                ],
                "candidate_ranks": [
                    {"candidate_id": c.candidate_id, "rank": ranks.get(c.candidate_id), "score": c.score}
                    for c in self.candidates
                ],
                "judge_structured_parse_status": "parsed" if self.judge.get("analysis") else "failed",
                "final_output_artifact_id": final_artifact.artifact_id if final_artifact else None,
                "judge_model_id": self.judge.get("judge_model_id"),
                "analysis": self.judge.get("analysis"),
                "parse_error": self.judge.get("parse_error"),
                "decision_reason": self.decision.get("reason"),
            },
        )

    def _final_artifact(self) -> ArtifactRef | None:
        text = self.final_text()
        if not text:
            return None
        artifact = _artifact(self.run_id, sha256_ref(text).removeprefix("sha256:"))
        return artifact if artifact.artifact_id in self.artifacts else None

    def _fusion_record(self, event: EventRecord) -> dict[str, Any]:
        summary = self.record.summary or {}
        request = _seed_request(self.record)
        synthesis = self.synthesis_record() if self.record.state == "completed" else None
        return {
            **contract("fusion-record.v1", event.ts),
            "run_id": self.run_id,
            "request_id": request.get("request_id") or self.run_id,
            "mode": summary.get("route") or self.record.mode,
            "status": "succeeded",
            "candidate_ids": [c.candidate_id for c in self.candidates],
            "model_call_ids": [self.call_id(n) for n, c in self.calls.items() if c.outcome != "running"],
            "started_at": self.record.created_at,
            "selected_candidate_id": (self.decision or {}).get("selected_candidate_id"),
            "synthesis_record_id": synthesis.synthesis_id if synthesis else None,
            "final_output": self.final_text(),
            "finished_at": event.ts,
            "latency_ms": (summary.get("latency_ms") or {}).get("total"),
            "metrics": {
                "candidate_count": len(self.candidates),
                "candidate_model_ids": [c.model_id for c in self.candidates],
                "mode": summary.get("route") or self.record.mode,
                "analysis": (self.judge or {}).get("analysis"),
                "cost_estimate": (summary.get("cost_estimate") or {}).get("amount"),
            },
            "artifacts": [a.wire() for a in self.artifacts.values()],
            "error": None,
        }

    def page(self, after: int, limit: int) -> RunEventPage:
        shown = [e for e in self.events if e.event_seq > after]
        page = shown[:limit]
        return RunEventPage(
            run_id=self.run_id,
            events=page,
            next_event_cursor=page[-1].event_seq if page else after,
            has_more=len(shown) > limit,
        )

    async def inspection(self, store: RunStoreAPI) -> RunInspection:
        final = _final_message(self.record)
        pause = next(reversed(self.pending.values()), None) if self.state == "requires_action" else None
        details = [{**d, "text": await _text(store, d.get("artifact_sha256"))} for d in self.details]
        judge = dict(self.judge) if self.judge else None
        if judge is not None:
            judge["raw"] = await _text(store, judge.get("raw_artifact_sha256"))
        calls = [
            {
                **c.payload,
                "call": n,
                "role": c.role,
                "endpoint_id": c.endpoint_id,
                "candidate_id": c.candidate_id,
                "outcome": c.outcome,
            }
            for n, c in sorted(self.calls.items())
        ]
        summary = run_summary(self.record, self.cursor)
        return RunInspection(
            run_id=self.run_id,
            trace_id=self.record.trace_id or "",
            state=self.record.state,
            status=STATUS_OF_STATE[self.record.state],
            event_cursor=self.cursor,
            candidates=self.candidates,
            artifacts=list(self.artifacts.values()),
            model_call_ids=[self.call_id(n) for n, c in sorted(self.calls.items()) if c.outcome != "running"],
            final_output=final.get("content") if final else None,
            final_output_artifact=self._final_artifact(),
            judge_synthesis_record=self.synthesis_record(),
            requires_action=pause,
            terminal_error=terminal_error(self.record),
            provider_metadata=[
                self._provider_metadata(c) for _, c in sorted(self.calls.items()) if c.outcome == "completed"
            ],
            fusionkit={
                **summary.fusionkit,
                "door": self.door,
                "route_reasons": next(
                    (p.get("route_reasons") for p in self._state_payloads() if p.get("route_reasons")), None
                ),
                "request": self.record.request,
                "candidates": details,
                "judge": judge,
                "verification": self.verification,
                "context_packing": self.packing,
                # Which prompt each role used, by sha256 (the text is an artifact): what an eval compares.
                "prompts": {p["role"]: p["prompt"] for p in self.packing},
                "model_calls": calls,
                "phases": self.phases,
                "pending_tool_calls": [p.wire() for p in self.pending.values()] if pause else [],
                "event_count": len(self.events),
            },
        )

    def _state_payloads(self) -> list[dict[str, Any]]:
        ours = [e.payload["fusionkit"] for e in self.events]
        return [event["payload"] for event in ours if event["type"] == "run.state"]


def _responses(events: list[EventRecord]) -> dict[int, str]:
    """Which stored artifact holds each model call's answer: a candidate's, the judge's reply, the synthesis."""
    last: dict[tuple[str, str | None], int] = {}
    responses: dict[int, str] = {}
    for event in events:
        payload = event.payload
        if event.type == "model_call.completed":
            last[(str(payload.get("role")), payload.get("candidate_id"))] = int(payload.get("call", 0))
            continue
        sha = payload.get("artifact_sha256") or payload.get("raw_artifact_sha256")
        key = {
            "candidate.recorded": ("panel", payload.get("candidate_id")),
            "judge.record": ("judge", None),
            "synthesis.completed": ("synthesizer", None),
        }.get(event.type)
        if key is not None and key[0] == "panel" and key not in last:
            key = ("single", key[1])
        if key in last and sha:
            responses[last[key]] = str(sha)
    return responses


async def _text(store: RunStoreAPI, sha256: str | None) -> str | None:
    if not sha256:
        return None
    artifact = await store.get_artifact(sha256)
    return artifact.text() if artifact is not None else None


async def read_run(store: RunStoreAPI, record: RunRecord, endpoints: Mapping[str, EndpointConfig]) -> RunView:
    """Read a run's whole event log into a RunView (the seed's events, and what its inspection needs)."""
    events = await store.events(record.run_id, after=0, limit=MAX_EVENTS)
    view = RunView(record=record, endpoints=endpoints, responses=_responses(events))
    # The judge's ranking is known only after the candidates are recorded; their events show it.
    judged = next((e for e in events if e.type == "judge.record"), None)
    if judged is not None:
        view.ranking = [c for c in ((judged.payload.get("analysis") or {}).get("ranking") or []) if isinstance(c, str)]
    for event in events:
        view.feed(event)
    return view
