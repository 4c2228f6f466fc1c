"""The router's wire additions to the OpenAI format: the `fusion` request options and the
`fusionkit` metadata object on every answer."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.protocol import ChatRequest
from server.prompt_files import PromptOverrides

__all__ = [
    "FUSION_MODELS",
    "MODE_ALIASES",
    "DecisionInfo",
    "FailedMember",
    "FusionChatRequest",
    "FusionMetadata",
    "FusionOptions",
    "ToolExecution",
    "mode_of_model",
]

FUSION_MODELS = ("fusionkit/router", "fusionkit/single", "fusionkit/self", "fusionkit/panel")
# fusionkit 0.10's names for the router mode, accepted wherever a mode or a fusionkit/* model is.
MODE_ALIASES = {"heuristic": "router"}


def _canonical_mode(value: Any) -> Any:
    return MODE_ALIASES.get(value, value) if isinstance(value, str) else value


def mode_of_model(model: str) -> str | None:
    """The mode a `fusionkit/*` model name asks for (`fusionkit/router` included); None for anything else."""
    if not model.startswith("fusionkit/"):
        return None
    mode = _canonical_mode(model.removeprefix("fusionkit/"))
    return mode if f"fusionkit/{mode}" in FUSION_MODELS else None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolExecution(_Strict):
    """How members' tool calls are executed. The defaults are fusionkit 0.1's safe policy: only
    read-only tools run, and identical read-only calls by several members run once."""

    mode: Literal["disabled", "external", "executor"] = "disabled"
    allowed_side_effects: list[str] = Field(default_factory=lambda: ["read_only"])
    environment: str | None = None
    policy_id: str | None = None
    dedupe_read_only: bool = True


class FusionOptions(_Strict):
    """The optional `fusion` object of a chat completion request."""

    mode: Literal["single", "self", "panel", "router"] | None = None
    panel_models: list[str] | None = None
    sample_count: int | None = Field(default=None, ge=1, le=32)
    verify: bool = False
    tool_execution: ToolExecution | None = None
    prompts: PromptOverrides | None = None  # the judge's, synthesizer's, verifier's, agent's instructions

    _mode_alias = field_validator("mode", mode="before")(_canonical_mode)


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
