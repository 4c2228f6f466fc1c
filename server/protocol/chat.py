"""The router's OpenAI-compatible surface: Chat Completions (the format is `bridge.protocol`'s) plus the
`fusion` request options and the `fusionkit` metadata object on every answer, and `GET /health`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator

from bridge.base_models import Strict
from bridge.protocol import ChatCompletion, ChatRequest
from server.prompt_files import PromptOverrides
from server.protocol import Mode, canonical_mode

__all__ = [
    "DecisionInfo",
    "FailedMember",
    "FusedChatCompletion",
    "FusionChatRequest",
    "FusionMetadata",
    "FusionOptions",
    "RouterHealth",
    "ToolExecution",
]


class ToolExecution(Strict):
    """How members' tool calls are executed. The defaults are fusionkit 0.1's safe policy: only
    read-only tools run, and identical read-only calls by several members run once."""

    mode: Literal["disabled", "external", "executor"] = "disabled"
    allowed_side_effects: list[str] = Field(default_factory=lambda: ["read_only"])
    environment: str | None = None
    policy_id: str | None = None
    dedupe_read_only: bool = True


class FusionOptions(Strict):
    """The optional `fusion` object of a chat completion request."""

    mode: Mode | None = None
    panel_models: list[str] | None = None
    sample_count: int | None = Field(default=None, ge=1, le=32)
    verify: bool = False
    tool_execution: ToolExecution | None = None
    # Per request, over the config's `fusion:` section (docs/fusion.md).
    synthesis: Literal["select_best", "synthesize", "auto"] | None = None
    tool_fusion: Literal["adopt", "synthesize"] | None = None
    show_reasoning: bool | None = None
    prompts: PromptOverrides | None = None  # the judge's, synthesizer's, verifier's, agent's instructions

    _mode_alias = field_validator("mode", mode="before")(canonical_mode)


class FusionChatRequest(ChatRequest):
    # As in fusionkit 0.1: a request that names no model asks the router.
    model: str = "fusionkit/router"
    fusion: FusionOptions | None = None

    def chat_request(self) -> ChatRequest:
        """The request without the `fusion` object, as a panel member receives it."""
        return ChatRequest.model_validate(
            {**self.model_dump(exclude={"fusion"}, exclude_unset=True), "model": self.model}
        )


class FailedMember(BaseModel):
    endpoint_id: str
    candidate_id: str
    reason: str
    status: int | None = None


class DecisionInfo(BaseModel):
    type: Literal["synthesize", "select_candidate"]
    reason: str
    selected_candidate_id: str | None = None


class FusionMetadata(BaseModel):
    """The `fusionkit` object on a fused chat.completion (and on the last stream chunk)."""

    run_id: str
    trace_id: str
    state: str
    status: Literal["succeeded", "failed", "cancelled"]
    event_cursor: int
    mode: str
    route: str
    route_reasons: list[str]
    candidate_count: int
    candidate_model_ids: list[str]
    failed_members: list[FailedMember]
    decision: DecisionInfo | None
    judge_model_id: str | None = None
    synthesizer_model_id: str | None = None
    judge_parse_error: str | None = None
    verification: dict[str, Any] | None = None
    cost_estimate: dict[str, Any]
    latency_ms: dict[str, float]
    failures: list[dict[str, Any]] = Field(default_factory=list)
    mock: bool = False


class FusedChatCompletion(ChatCompletion):
    """What `POST /v1/chat/completions` answers on the router: a chat.completion with the `fusionkit` object."""

    fusionkit: FusionMetadata


class RouterHealth(BaseModel):
    """`GET /health` on the router: overall status, each endpoint's readiness, the run store, whether auth is on."""

    status: Literal["ok", "degraded", "unavailable"]
    endpoints: dict[str, dict[str, Any]]
    store: dict[str, Any]
    auth: bool
