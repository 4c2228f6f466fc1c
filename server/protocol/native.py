"""The native runs API's wire format: what `/v1/fusion/runs` and its sub-resources read and answer.

The contract is fusionkit-server/-core 0.1.1 (their `contracts.py`, `run.py` and `app.py`): the
same field names, types, enum values and status codes, so a client written for the seed works
unchanged. What FusionKit adds is additions only: extra fields (most under one `fusionkit`
object), extra routes and headers, never a rename. Handlers parse requests into the models here
and answer with the models here; `server.run_views` fills them from the run store. How the
routes read bodies and answer errors in the seed's shape is `server.native_http`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from importlib import metadata
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.base_models import Open, Probability, Strict
from bridge.protocol import ChatMessage, ChatRequest, Tool
from server.protocol import Mode, canonical_mode
from server.protocol.chat import FusionOptions, ToolExecution
from server.store import RunState

__all__ = [
    "STATUS_OF_STATE",
    "Answer",
    "ArtifactKind",
    "ArtifactRef",
    "CandidateInspection",
    "ContractRecord",
    "CreateRunAnswer",
    "FusionRunEvent",
    "FusionRunRequest",
    "JudgeSynthesisRecord",
    "NativeErrorResponse",
    "NativeRunError",
    "RejudgeRequest",
    "RunEventPage",
    "RunEventType",
    "RunInspection",
    "RunList",
    "RunStateSummary",
    "Status",
    "ToolCallPlan",
    "ToolPausePlaceholder",
    "ToolResultSubmission",
    "canonical_hash",
    "contract",
    "error_kind",
    "run_error",
    "sha256_ref",
]

# -- the seed's vocabulary (fusionkit-core 0.1.1 contracts.py, run.py) ---------------------------

Status = Literal["pending", "running", "succeeded", "failed", "canceled", "requires_action", "skipped", "unsupported"]
ToolPolicy = Literal["disabled", "external_pause", "allowed"]
IdempotencyOutcome = Literal["created", "replayed", "conflict"]
ErrorKind = Literal[
    "none",
    "provider_error",
    "validation_error",
    "timeout",
    "rate_limited",
    "tool_denied",
    "secret_denied",
    "capability_missing",
    "internal_error",
]
Owner = Literal["fusionkit", "handoffkit", "cursorkit", "mlx-lm", "benchmark", "external"]
SideEffects = Literal["none", "read_only", "writes_workspace", "network", "tool_execution", "unknown"]
ArtifactKind = Literal["patch", "log", "transcript", "metrics", "benchmark_task", "worktree", "receipt", "other"]
SynthesisDecision = Literal["synthesize", "select_candidate", "repair_required", "failed"]
HarnessKind = Literal["generic", "cursor", "claude_code", "codex", "openai_responses"]
RunEventType = Literal[
    "run_queued",
    "state_changed",
    "candidate_recorded",
    "model_call_recorded",
    "artifact_recorded",
    "judge_synthesis_recorded",
    "tool_call_planned",
    "tool_execution_recorded",
    "run_resumed",
    "fusion_recorded",
    "error_recorded",
    "requires_action",
]
Sha256 = Annotated[str, Field(pattern=r"^sha256:[a-f0-9]{64}$")]
GitSha = Annotated[str, Field(pattern=r"^[a-f0-9]{40}$")]

STATUS_OF_STATE: dict[str, Status] = {
    "queued": "pending",
    "generating": "running",
    "requires_action": "requires_action",
    "judging": "running",
    "synthesizing": "running",
    "verifying": "running",
    "completed": "succeeded",
    "failed": "failed",
    "cancelled": "canceled",
    "expired": "failed",
}
# The seed's pinned hash of its contract schema bundle: the records here follow that bundle.
SCHEMA_BUNDLE_HASH = "sha256:955da2d6891c88d4c40746a8206439e2dae2efc1e7ffefca015e84d4ce265671"
# A FusionKit build is not a git checkout of the seed's repo: the contract's "unknown" sha.
UNKNOWN_GIT_SHA = "0" * 40


def _version() -> str:
    try:
        return metadata.version("fusionkit")
    except metadata.PackageNotFoundError:
        return "0"


def sha256_ref(text: str | bytes) -> str:
    """A content hash as the contracts write it: `sha256:<hex>`."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_hash(value: Any) -> str:
    """`sha256_ref` of canonical JSON (sorted keys, no spaces), as the seed hashes requests and arguments."""
    return sha256_ref(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str))


class Answer(Strict):
    """Base for what the routes answer: every field is always present (null when unknown), like the seed's."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class ContractRecord(Answer):
    """The contract metadata block (`schema`, `schema_version`, ..., `created_at`)."""

    schema_name: str = Field(alias="schema")
    schema_version: Literal["v1"] = "v1"
    schema_bundle_hash: str = SCHEMA_BUNDLE_HASH
    producer: str = "fusionkit"
    producer_version: str = Field(default_factory=_version)
    producer_git_sha: str = UNKNOWN_GIT_SHA
    created_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat())


def contract(schema: str, created_at: str | None = None) -> dict[str, Any]:
    """The contract metadata every seed record opens with, for a record FusionKit produced."""
    stamp = {"created_at": created_at} if created_at is not None else {}
    return ContractRecord.model_validate({"schema": schema, **stamp}).wire()


# -- errors ---------------------------------------------------------------------------------------


class NativeRunError(Answer):
    error_kind: ErrorKind
    error_code: str
    retryable: bool
    owner: Owner
    terminal_reason: str
    message: str | None = None


class NativeErrorFields(Open):
    """The `error` object of a native route's error: OpenAI's fields and the seed's `NativeRunError` fields."""

    message: str | None
    type: str
    param: str | None
    code: str | None
    error_kind: ErrorKind
    error_code: str
    retryable: bool
    owner: Owner
    terminal_reason: str


class NativeErrorResponse(BaseModel):
    """Every error body on `/v1/fusion/*`; a 422 also has FastAPI's `detail` list, as the seed answers."""

    error: NativeErrorFields
    detail: list[dict[str, Any]] | None = None


# Our error codes whose seed name differs, with the seed's terminal reason.
_SEED_CODES: dict[str, tuple[str, str]] = {
    "run_not_found": ("run_not_found", "unknown_run"),
    "idempotency_conflict": ("idempotency_conflict", "idempotency_key_reused_with_different_request"),
    "run_not_waiting": ("run_not_waiting_for_tool", "run_not_in_requires_action"),
    "unknown_tool_call_id": ("tool_call_mismatch", "tool_result_for_wrong_tool_call"),
    "candidate_mismatch": ("tool_candidate_mismatch", "tool_result_for_wrong_candidate"),
    "tool_name_mismatch": ("tool_name_mismatch", "tool_result_for_wrong_tool_name"),
    "executor_not_configured": ("executor_not_configured", "executor_mode_not_configured"),
}


def error_kind(status: int | None, code: str | None) -> ErrorKind:
    if code == "executor_not_configured" or (code or "").startswith(("side_effect", "max_tool")):
        return "tool_denied"
    if code == "budget_exceeded":
        return "validation_error"
    if status in (408, 504):
        return "timeout"
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "provider_error" if (code or "").startswith("upstream") else "secret_denied"
    if status is not None and 400 <= status < 500:
        return "validation_error"
    if status in (502, 503):
        return "provider_error"
    return "internal_error"


def run_error(
    status: int | None, code: str | None, message: str | None, terminal_reason: str | None = None
) -> NativeRunError:
    """The seed's error record for a failure we describe by HTTP status, code and message."""
    seed_code, seed_reason = _SEED_CODES.get(code or "", (code or "internal_error", code or "internal_error"))
    kind = error_kind(status, code)
    return NativeRunError(
        error_kind=kind,
        error_code=seed_code,
        retryable=status is not None and (status in (408, 429) or status >= 500),
        owner="external" if kind in ("provider_error", "rate_limited") else "fusionkit",
        terminal_reason=terminal_reason or seed_reason,
        message=message,
    )


# -- requests -------------------------------------------------------------------------------------


class _Request(Strict):
    """Request models the seed declares with `extra="forbid"` (its contract records)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class Sampling(_Request):
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: Probability | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None


class FusionRunRequest(_Request):
    """`fusion-run-request.v1` (the seed's FusionRunRequestV1), plus FusionKit's tool fields.

    The seed requires the contract metadata, `request_id`, `mode`, `sampling` and `verify`; here they
    may be left out (defaults are filled in and recorded). `mode: "heuristic"` means router.
    """

    schema_name: Literal["fusion-run-request.v1"] | None = Field(default=None, alias="schema")
    schema_version: Literal["v1"] | None = None
    schema_bundle_hash: Sha256 | None = None
    producer: str | None = Field(default=None, min_length=1)
    producer_version: str | None = Field(default=None, min_length=1)
    producer_git_sha: GitSha | None = None
    created_at: datetime | None = None
    request_id: str | None = Field(default=None, min_length=1)
    mode: Mode | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    sampling: Sampling | None = None
    verify: bool = False
    requested_models: list[str] | None = None
    sample_count: int | None = Field(default=None, ge=1, le=32)
    tool_policy: ToolPolicy | None = None
    request_hash: Sha256 | None = None
    # FusionKit's additions: tools for the members, and how their calls are executed.
    tools: list[Tool] | None = None
    tool_choice: Any = None
    tool_execution: ToolExecution | None = None

    _mode_alias = field_validator("mode", mode="before")(canonical_mode)

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
        mode = {"external_pause": "external", "allowed": "executor"}.get(self.tool_policy or "")
        if mode is not None:
            tools = (tools or ToolExecution()).model_copy(update={"mode": mode})
        return FusionOptions(
            mode=self.mode,
            panel_models=self.requested_models,
            sample_count=self.sample_count,
            verify=self.verify,
            tool_execution=tools,
        )

    def fingerprint(self) -> str:
        """The request hash an idempotency key is bound to: the body as the client sent it."""
        return canonical_hash(self.model_dump(mode="json", exclude_none=True, by_alias=True))

    def recorded(self, request_id: str) -> dict[str, Any]:
        """The request as the run records it and `run_queued` shows it: the seed's fields all present."""
        data = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        seed_fields = {
            **contract("fusion-run-request.v1"),
            **{k: v for k, v in data.items() if k in _CONTRACT_KEYS},
            "request_id": self.request_id or request_id,
            "mode": self.mode or "router",
            "sampling": Sampling().model_dump() | (self.sampling.model_dump() if self.sampling else {}),
            "verify": self.verify,
            "requested_models": self.requested_models,
            "sample_count": self.sample_count,
            "tool_policy": self.tool_policy,
            "request_hash": self.request_hash,
        }
        return {**data, **seed_fields}


_CONTRACT_KEYS = (
    "schema",
    "schema_version",
    "schema_bundle_hash",
    "producer",
    "producer_version",
    "producer_git_sha",
    "created_at",
)


class ContractError(_Request):
    kind: ErrorKind
    message: str | None = None
    retryable: bool | None = None


class ToolResultSubmission(_Request):
    """One tool result, for one pending call: `POST /v1/fusion/runs/{id}/tool-results`."""

    candidate_id: str
    tool_call_id: str
    tool_name: str
    output_hash: Sha256 | None = None
    output: str | None = None
    status: Status = "succeeded"
    error: ContractError | None = None

    def content(self) -> str:
        """What the member reads as the tool's answer: the output, else the error."""
        if self.output is not None:
            return self.output
        if self.error is not None:
            return f"error ({self.error.kind}): {self.error.message or 'no message'}"
        return "" if self.status == "succeeded" else f"the tool call ended {self.status}"


class RejudgeRequest(_Request):
    """`POST /v1/fusion/runs/{run_id}/rejudge`: which models judge and synthesize again (the config's by default)."""

    judge_model: str | None = None
    synthesizer_model: str | None = None


# -- answers: runs --------------------------------------------------------------------------------


class ArtifactRef(Answer):
    artifact_id: str
    kind: ArtifactKind
    hash: str
    uri: str | None = None
    redaction_status: Literal["synthetic", "redacted", "raw"] | None = None


class CandidateInspection(Answer):
    candidate_id: str
    model_id: str
    source_candidate_id: str | None = None
    model_call_id: str | None = None
    artifact: ArtifactRef | None = None
    score: float | None = None
    rank: int | None = None


class ToolCallPlan(ContractRecord):
    schema_name: str = Field(default="tool-call-plan.v1", alias="schema")
    plan_id: str
    tool_name: str
    arguments_hash: str
    side_effects: SideEffects
    status: Status = "requires_action"


class ToolPausePlaceholder(Answer):
    candidate_id: str
    tool_call_id: str
    plan: ToolCallPlan | None = None
    policy_cache_key: str | None = None


class JudgeSynthesisRecord(ContractRecord):
    schema_name: str = Field(default="judge-synthesis-record.v1", alias="schema")
    synthesis_id: str
    input_candidate_ids: list[str]
    status: Status
    decision: SynthesisDecision
    final_output: str
    judge_model_call_id: str | None = None
    selected_candidate_id: str | None = None
    rationale: str | None = None
    score: float | None = None
    metrics: dict[str, Any] | None = None


class _RunHead(Answer):
    """Where a run stands: the fields the seed's summary, inspection and create answer open with."""

    run_id: str
    trace_id: str
    state: RunState
    status: Status
    event_cursor: int


class RunStateSummary(_RunHead):
    idempotency_key: str | None = None
    request_hash: str | None = None
    terminal_error: NativeRunError | None = None
    terminal_reason: str | None = None
    final_output: str | None = None
    # FusionKit's additions: mode, route, models, decision, usage, cost, latencies, times.
    fusionkit: dict[str, Any] = Field(default_factory=dict)


class RunInspection(_RunHead):
    candidates: list[CandidateInspection] = Field(default_factory=list)
    artifacts: list[ArtifactRef] = Field(default_factory=list)
    model_call_ids: list[str] = Field(default_factory=list)
    final_output: str | None = None
    final_output_artifact: ArtifactRef | None = None
    judge_synthesis_record: JudgeSynthesisRecord | None = None
    requires_action: ToolPausePlaceholder | None = None
    terminal_error: NativeRunError | None = None
    provider_metadata: list[dict[str, Any]] = Field(default_factory=list)
    # FusionKit's additions: each candidate's text (and dropped members), the judge's analysis,
    # the decision, every model call, the phases, every pending tool call.
    fusionkit: dict[str, Any] = Field(default_factory=dict)


class CreateRunAnswer(_RunHead):
    """`POST /v1/fusion/runs`: flat, with `inspection` once the run has executed (or paused)."""

    idempotency_outcome: IdempotencyOutcome
    terminal_error: NativeRunError | None = None
    inspection: RunInspection | None = None

    def wire(self) -> dict[str, Any]:
        data = super().wire()
        if self.inspection is None:
            del data["inspection"]  # the seed's replay carries none
        return data


class FusionRunEvent(Answer):
    event_seq: int
    run_id: str
    trace_id: str
    state: RunState
    status: Status
    created_at: str
    event_type: RunEventType
    candidate_id: str | None = None
    model_call_id: str | None = None
    artifact_id: str | None = None
    tool_call_id: str | None = None
    idempotency_key: str | None = None
    request_hash: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


class RunEventPage(Answer):
    run_id: str
    events: list[FusionRunEvent]
    next_event_cursor: int | None
    has_more: bool = False  # FusionKit's paging (`limit`)


class RunList(Strict):
    """`GET /v1/fusion/runs` (an addition): the most recent runs, newest first."""

    object: Literal["list"] = "list"
    data: list[RunStateSummary]
    has_more: bool
