"""The native API's wire format (SPEC §5): what `/v1/fusion/*` reads and answers.

The contract is fusionkit-server/-core 0.1.1 (their `contracts.py`, `run.py` and `app.py`): the
same field names, types, enum values and status codes, so a client written for the seed works
unchanged. What FusionKit adds is additions only: extra fields (most under one `fusionkit`
object), extra routes and headers, never a rename. Handlers parse requests into the models here
and answer with the models here; `server.run_views` fills them from the run store and
`server.trajectories` from a trajectory fusion.

    body = await parse_native(request, FusionRunRequest)        # 422 + `detail`, as the seed answers
    router = APIRouter(prefix="/fusion/runs", route_class=NativeRoute)   # every error in the seed's shape
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from importlib import metadata
from typing import Annotated, Any, Literal, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.responses import Response

from bridge.errors import APIError, error_body, key_path
from bridge.protocol import ChatMessage, ChatRequest, Tool
from server.protocol import MODE_ALIASES, FusionOptions, ToolExecution
from server.store import RunState

__all__ = [
    "STATUS_OF_STATE",
    "ArtifactKind",
    "ArtifactRef",
    "CandidateInspection",
    "ContractRecord",
    "CreateRunAnswer",
    "FuseTrajectoriesRequest",
    "FusionError",
    "FusionRunEvent",
    "FusionRunRequest",
    "JudgeSynthesisRecord",
    "NativeRoute",
    "NativeRunError",
    "RunEventPage",
    "RunEventType",
    "RunInspection",
    "RunStateSummary",
    "StepTrajectoriesRequest",
    "ToolCallPlan",
    "ToolPausePlaceholder",
    "ToolResultSubmission",
    "Trajectory",
    "TrajectoryStep",
    "TrajectorySynthesis",
    "TrajectoryVerification",
    "canonical_hash",
    "contract",
    "native_error",
    "parse_native",
    "run_error",
    "sha256_ref",
    "validation_failed",
]

# -- the seed's vocabulary (fusionkit-core 0.1.1 contracts.py, run.py) ---------------------------

Status = Literal["pending", "running", "succeeded", "failed", "canceled", "requires_action", "skipped", "unsupported"]
FusionMode = Literal["single", "self", "panel", "router"]
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


class _Answer(BaseModel):
    """Base for what the routes answer: every field is always present (null when unknown), like the seed's."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    def wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)


class ContractRecord(_Answer):
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


class NativeRunError(_Answer):
    error_kind: ErrorKind
    error_code: str
    retryable: bool
    owner: Owner
    terminal_reason: str
    message: str | None = None


class FusionError(APIError):
    """An error of the native routes: the seed's `NativeRunError` fields, the OpenAI ones beside them.

    A 422 also carries FastAPI's `detail` list, which is what the seed answers for a request that
    does not validate.
    """

    def __init__(
        self, status: int, native: NativeRunError, *, param: str | None = None, detail: list[Any] | None = None
    ) -> None:
        kind = {404: "not_found_error", 429: "rate_limit_error"}.get(status, "invalid_request_error")
        if status >= 500:
            kind = "server_error"
        super().__init__(
            status, native.message or native.terminal_reason, type=kind, code=native.error_code, param=param
        )
        self.native = native
        self.detail = detail

    def body(self) -> dict[str, Any]:
        body = error_body(self.message, self.type, code=self.code, param=self.param)
        body["error"].update(self.native.wire())
        if self.detail is not None:
            body["detail"] = self.detail
        return body


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


def native_error(error: APIError) -> FusionError:
    """Any APIError a native route raises, in the native routes' shape (same status)."""
    if isinstance(error, FusionError):
        return error
    native = run_error(error.status, error.code, error.message)
    converted = FusionError(error.status, native, param=error.param)
    converted.retry_after = error.retry_after
    return converted


def validation_failed(errors: list[Any], where: str = "body") -> FusionError:
    """A request that does not validate: 422 with FastAPI's `detail` list, as the seed answers it."""
    detail = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        if not loc or loc[0] not in ("body", "query", "path", "header"):
            loc = (where, *loc)
        item = {k: v for k, v in error.items() if k in ("type", "msg", "input", "ctx")}
        if "input" in item:
            item["input"] = _echoable(item["input"])
        if "ctx" in item:
            item["ctx"] = {k: v if isinstance(v, str | int | float | bool) else str(v) for k, v in item["ctx"].items()}
        detail.append({**item, "loc": list(loc)})
    first = detail[0] if detail else {"loc": [where], "msg": "invalid request"}
    path = key_path([p for p in first["loc"][1:] if not str(p).startswith("function-")]) or None
    message = f"{path + ': ' if path else ''}{first['msg']}"
    if len(detail) > 1:
        message += f" (and {len(detail) - 1} more problems)"
    native = NativeRunError(
        error_kind="validation_error",
        error_code="invalid_request",
        retryable=False,
        owner="fusionkit",
        terminal_reason="invalid_request",
        message=message,
    )
    return FusionError(422, native, param=path, detail=detail)


_ECHO_LIMIT = 2_000


def _echoable(value: Any) -> Any:
    """A validation error's `input` as it can be echoed: JSON-safe (no NaN), and a long one cut, as text."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return repr(value)[:_ECHO_LIMIT]
    return value if len(text) <= _ECHO_LIMIT else text[:_ECHO_LIMIT] + "..."


M = TypeVar("M", bound=BaseModel)


async def parse_native(request: Request, model: type[M]) -> M:
    """A JSON body as `model`; malformed JSON or a schema violation is a 422 in the seed's shape."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problem = {"type": "json_invalid", "loc": ["body", 0], "msg": "JSON decode error", "ctx": {"error": str(exc)}}
        raise validation_failed([{**problem, "input": {}}]) from None
    except RecursionError:
        problem = {"type": "json_invalid", "loc": ["body"], "msg": "JSON decode error: nested too deeply"}
        raise validation_failed([{**problem, "input": {}}]) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_failed(exc.errors(include_url=False)) from None


class NativeRoute(APIRoute):
    """A route whose every error leaves in the native shape: validation as a 422 with `detail`, the rest
    as `FusionError` (the OpenAI error fields and the seed's `NativeRunError` fields together)."""

    def get_route_handler(self) -> Any:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response: Response = await handler(request)
            except RequestValidationError as exc:
                raise validation_failed(list(exc.errors())) from None
            except APIError as exc:
                raise native_error(exc) from None
            return response

        return route


# -- requests -------------------------------------------------------------------------------------


class _Request(BaseModel):
    """Request models the seed declares with `extra="forbid"` (its contract records)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)


class Sampling(_Request):
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
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
    mode: FusionMode | None = None
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

    @field_validator("mode", mode="before")
    @classmethod
    def _mode_alias(cls, value: Any) -> Any:
        return MODE_ALIASES.get(value, value) if isinstance(value, str) else value

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


class _Lenient(BaseModel):
    """Request models the seed declares as plain pydantic models: unknown keys are ignored."""

    model_config = ConfigDict(extra="ignore")


class TrajectoryStep(_Lenient):
    index: int = Field(ge=0)
    type: Literal["reasoning", "tool_call", "observation", "output"]
    text: str | None = None
    tool_name: str | None = None
    tool_call_id: str | None = None
    tool_input: str | None = None
    is_error: bool | None = None
    output_hash: Sha256 | None = None


class TrajectoryVerification(_Lenient):
    status: Status
    evidence: list[str] | None = None
    exit_code: int | None = None


class Trajectory(_Lenient):
    """One agent's trajectory: the seed's `TrajectoryInput` (harness-trajectory.v1 without its metadata)."""

    trajectory_id: str = Field(min_length=1)
    model_id: str = Field(min_length=1)
    status: Status
    steps: list[TrajectoryStep] = Field(default_factory=list)
    final_output: str
    candidate_id: str | None = None
    model: str | None = None
    harness_kind: HarnessKind | None = None
    diff: str | None = None
    verification: TrajectoryVerification | None = None
    metadata: dict[str, Any] | None = None

    @property
    def verified(self) -> bool:
        return self.verification is not None and self.verification.status == "succeeded"


class FuseTrajectoriesRequest(_Lenient):
    messages: list[ChatMessage]
    trajectories: list[Trajectory]
    judge_model: str | None = None
    synthesizer_model: str | None = None


def _flat_tool(raw: Any) -> dict[str, Any] | None:
    """Nested `{"type": "function", "function": {...}}` or flat `{name, description, parameters}`; None if nameless."""
    if not isinstance(raw, dict):
        return None
    nested = raw.get("function")
    function: dict[str, Any] = nested if isinstance(nested, dict) else raw
    name = function.get("name")
    if not isinstance(name, str) or not name:
        return None
    out = {"name": name, "description": function.get("description"), "parameters": function.get("parameters")}
    return {"type": "function", "function": {k: v for k, v in out.items() if v is not None}}


class StepTrajectoriesRequest(BaseModel):
    """`:step`: raw OpenAI messages, trajectories as reference (none is fine), tools, and OpenAI's sampling fields."""

    model_config = ConfigDict(extra="allow")

    model: str = "fusionkit/router"
    messages: list[ChatMessage] = Field(min_length=1)
    trajectories: list[Trajectory] = Field(default_factory=list)
    tools: list[Tool] | None = None
    tool_choice: Any = None
    judge_model: str | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None

    @field_validator("tools", mode="before")
    @classmethod
    def _tools(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, list):
            raise ValueError("must be a list of tools")
        return [t for t in (_flat_tool(raw) for raw in value) if t is not None] or None

    @field_validator("tool_choice", mode="before")
    @classmethod
    def _tool_choice(cls, value: Any) -> Any:
        # The seed's flat `{"name": ...}` is OpenAI's `{"type": "function", "function": {"name": ...}}`.
        if isinstance(value, dict) and "function" not in value and isinstance(value.get("name"), str):
            return {"type": "function", "function": {"name": value["name"]}}
        return value


# -- answers: runs --------------------------------------------------------------------------------


class ArtifactRef(_Answer):
    artifact_id: str
    kind: ArtifactKind
    hash: str
    uri: str | None = None
    redaction_status: Literal["synthetic", "redacted", "raw"] | None = None


class CandidateInspection(_Answer):
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


class ToolPausePlaceholder(_Answer):
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


class _RunHead(_Answer):
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


class FusionRunEvent(_Answer):
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


class RunEventPage(_Answer):
    run_id: str
    events: list[FusionRunEvent]
    next_event_cursor: int | None
    has_more: bool = False  # FusionKit's paging (`limit`)


# -- answers: trajectories ------------------------------------------------------------------------


class TrajectorySynthesis(_Answer):
    """`POST /v1/fusion/trajectories:fuse` (and `fusionkit fuse --json`)."""

    final_output: str
    synthesis_id: str | None
    decision: SynthesisDecision
    rationale: str
    judge_synthesis_record: JudgeSynthesisRecord
    usage: dict[str, Any] = Field(default_factory=dict)
    fusionkit: dict[str, Any] = Field(default_factory=dict)
