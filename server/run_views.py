"""Reading a run back: the summary every runs endpoint returns, and the full inspection.

The inspection answers "what did each model say, and why was this the answer?" from the run's
events and artifacts alone, so it works for any past run, in this router or after a restart.
"""

from __future__ import annotations

from typing import Any

from server.store import RunRecord, RunStore

__all__ = ["DOOR_EVENT", "inspect_run", "run_summary"]

MAX_EVENTS = 10_000
# The event that says which front door a run came through (chat.completions, responses, messages).
DOOR_EVENT = "run.door"


def run_summary(record: RunRecord) -> dict[str, Any]:
    summary = record.summary or {}
    return {
        "object": "fusion.run",
        "run_id": record.run_id,
        "state": record.state,
        "mode": record.mode,
        "trace_id": record.trace_id,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
        "terminal_reason": record.terminal_reason,
        "route": summary.get("route"),
        "models": summary.get("models"),
        "decision": summary.get("decision"),
        "final_output": summary.get("final_output"),
        "usage": summary.get("usage"),
        "cost_estimate": summary.get("cost_estimate"),
        "latency_ms": summary.get("latency_ms"),
        "error": summary.get("error"),
    }


async def _text(store: RunStore, sha256: str | None) -> str | None:
    if not sha256:
        return None
    artifact = await store.get_artifact(sha256)
    if artifact is None:
        return None
    content = artifact.content
    return content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)


async def inspect_run(store: RunStore, record: RunRecord, *, pending: dict[str, Any] | None) -> dict[str, Any]:
    events = await store.events(record.run_id, after=0, limit=MAX_EVENTS)
    judge = next((e.payload for e in events if e.type == "judge.record"), None)
    ranking: list[str] = (judge or {}).get("analysis", {}).get("ranking", []) if judge and judge.get("analysis") else []
    calls: dict[int, dict[str, Any]] = {}
    candidates: list[dict[str, Any]] = []
    for event in events:
        payload = event.payload
        if event.type in ("model_call.completed", "model_call.failed"):
            calls[payload["call"]] = {**payload, "outcome": event.type.split(".")[1]}
        elif event.type == "candidate.recorded":
            cid = payload["candidate_id"]
            candidates.append(
                {
                    **payload,
                    "status": "ok",
                    "rank": ranking.index(cid) + 1 if cid in ranking else None,
                    "text": await _text(store, payload.get("artifact_sha256")),
                }
            )
        elif event.type == "candidate.dropped":
            candidates.append({**payload, "status": "dropped", "rank": None, "text": None})
    if judge is not None:
        judge = {**judge, "raw": await _text(store, judge.get("raw_artifact_sha256"))}
    decision = next((e.payload for e in reversed(events) if e.type == "decision"), None)
    door = next((e.payload.get("door") for e in events if e.type == DOOR_EVENT), None)
    verification = next((e.payload for e in events if e.type == "verification.completed"), None)
    phases = [
        {"state": e.payload.get("state"), "seq": e.seq, "ts": e.ts}
        for e in events
        if e.type in ("run.state", "run.expired")
    ]
    return {
        **run_summary(record),
        "object": "fusion.run.inspection",
        "door": door,
        "request": record.request,
        "candidates": candidates,
        "judge_synthesis_record": judge,
        "decision": decision,
        "verification": verification,
        "model_calls": [calls[k] for k in sorted(calls)],
        "phases": phases,
        "pending_action": pending,
        "event_count": len(events),
    }
