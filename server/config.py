"""The panel config (fusionkit 0.1 key names) as pydantic models.

Loading a file (YAML, `${VAR}` expansion, error messages that name the file) is the CLI's job:
see `fusionkit_cli.config_loader`. These models hold the rules that make a config valid.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from bridge.base_models import Probability, Strict
from bridge.endpoint import EndpointConfig, env_name
from server.prompt_files import PromptFileError, Role, read_prompt_file

__all__ = [
    "DEFAULT_WALL_CLOCK_S",
    "BudgetConfig",
    "FusionSettings",
    "Mode",
    "OtelConfig",
    "PanelConfig",
    "PanelSettings",
    "PromptFiles",
    "RetentionConfig",
    "SamplingConfig",
    "ServerConfig",
    "run_store_location",
]

# How a request is answered (the wire's `fusion.mode`, a `fusionkit/*` model, `default_mode`): the one definition.
Mode = Literal["single", "self", "panel", "router"]

# A run (panel, judge, synthesizer, their retries, tool pauses) that takes longer than this is stuck, not
# slow: without a bound a hung judge alone holds a request for its endpoint's whole timeout per attempt.
DEFAULT_WALL_CLOCK_S = 300.0


class SamplingConfig(Strict):
    temperature: float = Field(default=0.2, ge=0, le=2)
    top_p: Probability = 0.95
    max_tokens: int = Field(default=1024, ge=1)
    seed: int | None = None
    # The judge's analysis and the verifier's verdict are JSON for the engine: a client's small
    # max_tokens must not truncate them, so they have a budget of their own.
    judge_max_tokens: int = Field(default=2048, ge=1)


class BudgetConfig(Strict):
    max_candidates: int | None = Field(default=None, ge=1)
    wall_clock_s: float | None = Field(default=DEFAULT_WALL_CLOCK_S, gt=0)  # null: no bound at all
    max_cost: float | None = Field(default=None, ge=0)
    max_tool_rounds: int | None = Field(default=None, ge=0)
    max_tool_calls: int | None = Field(default=None, ge=0)


class PanelSettings(Strict):
    member_timeout_s: float | None = Field(default=None, gt=0)
    min_successful: int = Field(default=1, ge=1)
    # Cut the tail: once `quorum` members answered, the others get `grace_ms` more, then are dropped as late.
    quorum: int | None = Field(default=None, ge=1)
    grace_ms: float = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check_quorum(self) -> PanelSettings:
        if self.quorum is not None and self.quorum < self.min_successful:
            # The cut would drop members the run needs, and the run would then fail quorum_not_met.
            raise ConfigReferenceError(
                "panel.quorum",
                self.quorum,
                f"at least panel.min_successful ({self.min_successful}), or null for no quorum",
            )
        if self.quorum is None and self.grace_ms > 0:
            raise ConfigReferenceError(
                "panel.grace_ms", self.grace_ms, "0 without panel.quorum (the grace starts once a quorum answered)"
            )
        return self


Synthesis = Literal["select_best", "synthesize", "auto"]
ToolFusion = Literal["adopt", "synthesize"]


class PromptFiles(Strict):
    """Prompt files by role (paths relative to the working directory), read when the config is loaded."""

    judge: str | None = None
    synthesizer: str | None = None
    verifier: str | None = None
    agent: str | None = None

    @field_validator("judge", "synthesizer", "verifier", "agent")
    @classmethod
    def _readable(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                read_prompt_file(value)
            except PromptFileError as exc:
                raise ValueError(str(exc)) from None
        return value

    def paths(self) -> dict[Role, str | None]:
        return {"judge": self.judge, "synthesizer": self.synthesizer, "verifier": self.verifier, "agent": self.agent}


class FusionSettings(Strict):
    """How candidates become the answer, unless a request says otherwise (its `fusion` object)."""

    # select_best: the judge's chosen candidate, verbatim; synthesize: the synthesizer writes the answer;
    # auto: select when the judge finds one clearly best or the candidates agree, else synthesize.
    synthesis: Synthesis = "synthesize"
    # For a turn whose candidates call tools: adopt one candidate's whole batch of calls, or let the
    # synthesizer take the agent step with the candidates as reference.
    tool_fusion: ToolFusion = "synthesize"
    # Stream the judge's analysis (and the panel's progress) as reasoning before the answer.
    show_reasoning: bool = False
    # Prompt files that replace the built-in ones (docs/fusion.md#prompt-files).
    prompts: PromptFiles = Field(default_factory=PromptFiles)


class RetentionConfig(Strict):
    """How long finished runs are kept; the router prunes in the background (null: no limit of that kind)."""

    max_age_days: float | None = Field(default=30, gt=0)
    max_runs: int | None = Field(default=100_000, ge=1)
    prune_every_s: float = Field(default=3600, gt=0)


class OtelConfig(Strict):
    """OpenTelemetry traces; on when `endpoint` or OTEL_EXPORTER_OTLP_ENDPOINT is set (docs/observability.md)."""

    # An OTLP/HTTP base URL (spans go to its /v1/traces); null: the OTEL_EXPORTER_OTLP_* variables decide.
    endpoint: str | None = None
    # Prompts and answers on spans; null: OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT decides (off).
    capture_content: bool | None = None

    @field_validator("endpoint")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("allowed: an http:// or https:// URL of an OTLP/HTTP receiver, e.g. http://127.0.0.1:4318")
        return value


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    api_key_env: str | None = None
    # A SQLite file, or a postgresql:// URL for a store several router replicas share (FUSIONKIT_RUN_STORE wins).
    run_store: str = ".fusionkit/runs.sqlite3"
    # A router renews its lease on its runs every third of this; another router expires them once it lapses.
    run_lease_s: float = Field(default=15, ge=1)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    # A connection that has not sent a complete request head within this long is closed (slow clients).
    header_timeout_s: float = Field(default=10, gt=0)
    # GET /metrics (Prometheus) on the router and every bridge; false: no /metrics, nothing counted.
    metrics: bool = True
    # /metrics needs the /v1 key when api_key_env is set; false: any scraper may read it.
    metrics_auth: bool = True
    otel: OtelConfig = Field(default_factory=OtelConfig)

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        return env_name(value)

    @field_validator("run_store")
    @classmethod
    def _store_location(cls, value: str) -> str:
        return run_store_location(value)


def run_store_location(value: str) -> str:
    """A run store location: a file path, or a postgresql:// URL with a host or a socket directory."""
    if not value.strip():
        raise ValueError("a file path or a postgresql:// URL, not an empty string")
    if "://" not in value:
        return value
    scheme = value.partition("://")[0]
    if scheme not in ("postgresql", "postgres"):
        raise ValueError(f"a file path or a postgresql:// URL; {scheme}:// is not a run store")
    try:
        urlsplit(value).port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        raise ValueError(f"a valid postgresql:// URL ({exc})") from None
    return value


class PanelConfig(Strict):
    endpoints: list[EndpointConfig] = Field(min_length=1)
    default_model: str | None = None
    judge_model: str | None = None
    synthesizer_model: str | None = None
    default_mode: Mode = "router"
    panel_models: list[str] = Field(default_factory=list)
    sample_count: int = Field(default=4, ge=1, le=32)
    self_temperatures: list[float] = Field(default_factory=lambda: [0.2, 0.4, 0.6, 0.8])
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    panel: PanelSettings = Field(default_factory=PanelSettings)
    fusion: FusionSettings = Field(default_factory=FusionSettings)
    server: ServerConfig = Field(default_factory=ServerConfig)

    @model_validator(mode="after")
    def _check_references(self) -> PanelConfig:
        ids = [e.id for e in self.endpoints]
        seen: set[str] = set()
        for i, endpoint_id in enumerate(ids):
            if endpoint_id in seen:
                raise ConfigReferenceError(f"endpoints[{i}].id", endpoint_id, "a unique id (it is declared twice)")
            seen.add(endpoint_id)
        ports: dict[int, str] = {}
        for i, endpoint in enumerate(self.endpoints):
            if endpoint.port is None:
                continue
            if endpoint.port in ports or endpoint.port == self.server.port:
                other = ports.get(endpoint.port, "server.port")
                raise ConfigReferenceError(f"endpoints[{i}].port", endpoint.port, f"a port not already used by {other}")
            ports[endpoint.port] = endpoint.id
        if self.default_model is None:
            self.default_model = ids[0]
        allowed = ", ".join(ids)
        for key in ("default_model", "judge_model", "synthesizer_model"):
            value = getattr(self, key)
            if value is not None and value not in seen:
                raise ConfigReferenceError(key, value, f"one of the endpoint ids: {allowed}")
        for i, member in enumerate(self.panel_models):
            if member not in seen:
                raise ConfigReferenceError(f"panel_models[{i}]", member, f"one of the endpoint ids: {allowed}")
        if len(set(self.panel_models)) != len(self.panel_models):
            raise ConfigReferenceError("panel_models", self.panel_models, "each endpoint at most once")
        # One run's cost is one sum: every endpoint prices in the same currency.
        first = self.endpoints[0].pricing.currency
        for i, endpoint in enumerate(self.endpoints):
            if endpoint.pricing.currency != first:
                raise ConfigReferenceError(
                    f"endpoints[{i}].pricing.currency",
                    endpoint.pricing.currency,
                    f"{first!r}, the currency of endpoints[0]: a run's cost estimate is one sum",
                )
        return self

    @property
    def currency(self) -> str:
        return self.endpoints[0].pricing.currency

    # Resolved roles: the defaults the spec gives, applied in one place.
    @property
    def default_endpoint(self) -> str:
        assert self.default_model is not None  # set by the validator
        return self.default_model

    @property
    def judge(self) -> str:
        return self.judge_model or self.default_endpoint

    @property
    def synthesizer(self) -> str:
        return self.synthesizer_model or self.judge

    @property
    def panel_members(self) -> list[str]:
        return list(self.panel_models) or [e.id for e in self.endpoints]

    def endpoint(self, endpoint_id: str) -> EndpointConfig:
        for endpoint in self.endpoints:
            if endpoint.id == endpoint_id:
                return endpoint
        raise KeyError(endpoint_id)


class ConfigReferenceError(ValueError):
    """A config value that points at nothing, or clashes; carries its key path."""

    def __init__(self, path: str, found: object, allowed: str) -> None:
        super().__init__(f"{path}: found {found!r}; allowed: {allowed}")
        self.path = path
        self.found = found
        self.allowed = allowed
