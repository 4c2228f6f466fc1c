"""What a run produced, as typed values: how the answer was decided (`Outcome`) and the whole
run's result (`FusionResult`) that the HTTP layer turns into its wire format."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from bridge.protocol import AssistantMessage, Usage
from server.engine.candidates import Candidate
from server.engine.judge import JudgeAnalysis
from server.protocol.chat import DecisionInfo, FailedMember

__all__ = ["CostEstimate", "Failure", "FailureCode", "FusionResult", "JudgeOutcome", "Outcome", "Verification"]

# Why a run, or a part of it, failed: in the `fusionkit` metadata (parts that failed and were worked
# around) and as the error code of a run that failed.
FailureCode = Literal[
    "all_members_failed",
    "quorum_not_met",
    "judge_invalid_json",
    "judge_failed",
    "synthesis_empty",
    "schema_unsatisfied",
    "budget_exceeded",
    "deadline_exceeded",
]


@dataclass(frozen=True)
class Failure:
    code: FailureCode
    message: str
    members: list[FailedMember] = field(default_factory=list)  # the members behind it, with their reasons

    def payload(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "members": [m.model_dump() for m in self.members]}


@dataclass(frozen=True)
class JudgeOutcome:
    """What the judge said: its analysis, or why there is none (the raw reply is an artifact of the run)."""

    model_id: str
    analysis: JudgeAnalysis | None
    parse_error: str | None
    call_failed: bool = False  # the judge's call failed (else: it answered, maybe with unusable JSON)


@dataclass(frozen=True)
class Verification:
    verifier_model_id: str
    passed: bool | None
    issues: list[str]
    parse_error: str | None = None

    def payload(self) -> dict[str, Any]:
        """As the run records it and the `fusionkit` metadata shows it (`parse_error` only when there is one)."""
        data = asdict(self)
        if self.parse_error is None:
            del data["parse_error"]
        return data


@dataclass
class Outcome:
    """How the answer was decided, and the answer.

    `written_finish` is what the answer's writer said when it stopped (`length`, `content_filter`);
    the run's finish reason follows from it and from the answer (tool calls, stop sequences).
    """

    decision: DecisionInfo
    message: AssistantMessage
    written_finish: str | None = None
    judge: JudgeOutcome | None = None
    synthesizer_model_id: str | None = None
    verification: Verification | None = None
    failures: list[Failure] = field(default_factory=list)  # what failed on the way and was worked around


@dataclass(frozen=True)
class CostEstimate:
    amount: float
    currency: str
    complete: bool  # false when a real endpoint without pricing took part


@dataclass
class FusionResult:
    """One finished run: the answer, how it was reached, and what it cost."""

    run_id: str
    trace_id: str
    mode: str
    route: str
    route_reasons: list[str]
    candidates: list[Candidate]
    failed: list[FailedMember]
    outcome: Outcome
    finish_reason: str
    usage: Usage
    cost: CostEstimate
    latency_ms: dict[str, float]
    mock: bool  # a mock wrote some of it (a candidate, the judge's or the synthesizer's text)
    logprobs: dict[str, Any] | None = None  # single mode only: a fused answer has none
    # The run's last event once it is recorded complete (set by whoever records the run).
    event_cursor: int = field(default=0)

    @property
    def message(self) -> AssistantMessage:
        return self.outcome.message

    @property
    def decision(self) -> DecisionInfo:
        return self.outcome.decision

    @property
    def analysis(self) -> JudgeAnalysis | None:
        return self.outcome.judge.analysis if self.outcome.judge else None
