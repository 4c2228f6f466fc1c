"""One answer from the router, as the eval reads it: the message, and the run's facts from `fusionkit`.

    answer = Answer.from_completion(response.json(), wall_ms=412.0)
    answer.text, answer.tool_calls, answer.run_id, answer.cost, answer.latency_ms

This is the one place that reads an answer's wire format (the chat.completion and its `fusionkit`
object); everything else in the eval works on `Answer`. The eval reads nothing of the
`/v1/fusion/runs` API, whose shapes may change: run ids are all it keeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Answer", "CalledTool"]


@dataclass(frozen=True)
class CalledTool:
    name: str
    arguments: str


@dataclass
class Answer:
    text: str = ""
    tool_calls: list[CalledTool] = field(default_factory=list)
    run_id: str | None = None
    cost: float = 0.0
    cost_complete: bool = True
    latency_ms: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    candidate_models: list[str] = field(default_factory=list)
    failed_members: list[str] = field(default_factory=list)
    decision: str | None = None
    error: str | None = None
    status: int | None = None  # the HTTP status of a failed answer

    @classmethod
    def from_completion(cls, data: dict[str, Any], *, wall_ms: float) -> Answer:
        choices = data.get("choices") or [{}]
        message = choices[0].get("message") or {}
        usage = data.get("usage") or {}
        meta = data.get("fusionkit") or {}
        cost = meta.get("cost_estimate") or {}
        decision = meta.get("decision") or {}
        calls = [
            CalledTool(str(c.get("function", {}).get("name", "")), str(c.get("function", {}).get("arguments") or ""))
            for c in message.get("tool_calls") or []
        ]
        return cls(
            text=message.get("content") or "",
            tool_calls=calls,
            run_id=meta.get("run_id"),
            cost=float(cost.get("amount") or 0.0),
            cost_complete=bool(cost.get("complete", True)),
            # The run's own time; the request's wall time when the router does not say.
            latency_ms=float((meta.get("latency_ms") or {}).get("total") or wall_ms),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            candidate_models=list(meta.get("candidate_model_ids") or []),
            failed_members=[f"{f.get('endpoint_id')}: {f.get('reason')}" for f in meta.get("failed_members") or []],
            decision=f"{decision['type']} ({decision.get('reason')})" if decision.get("type") else None,
        )

    @classmethod
    def failed(cls, error: str, *, wall_ms: float, run_id: str | None = None, status: int | None = None) -> Answer:
        return cls(error=error, latency_ms=wall_ms, run_id=run_id, status=status)

    def shown(self, limit: int = 2000) -> str:
        """The answer as a person reads it in the report: its text, then its tool calls."""
        parts = [self.text] if self.text else []
        parts += [f"[tool call {c.name}({c.arguments})]" for c in self.tool_calls]
        text = "\n".join(parts)
        return text if len(text) <= limit else text[:limit] + " [...]"
