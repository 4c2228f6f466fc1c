"""What one endpoint is: the provider model a bridge fronts (one entry of `endpoints:`)."""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import Literal

from pydantic import Field, field_validator, model_validator

from bridge.base_models import Probability, Strict

__all__ = [
    "DEFAULT_CONTEXT_WINDOW",
    "ENDPOINT_ID_MAX",
    "ENV_NAME",
    "NOT_AN_ENV_NAME",
    "PROVIDERS",
    "Capabilities",
    "EndpointConfig",
    "MockSettings",
    "Pricing",
    "env_name",
]

Provider = Literal["openai", "anthropic", "google", "openai-compatible", "mock"]
PROVIDERS: tuple[str, ...] = ("openai", "anthropic", "google", "openai-compatible", "mock")
# An id names a log file, a process and a model clients ask for: a short, path-safe word.
ENDPOINT_ID_MAX = 64
ENDPOINT_ID = re.compile(rf"^[A-Za-z0-9._-]{{1,{ENDPOINT_ID_MAX}}}$")
# Providers whose every call needs a key; `openai-compatible` needs one only when it names a variable.
KEYED_PROVIDERS = ("openai", "anthropic", "google")


# The context window assumed for an endpoint that declares none: small enough for most local
# servers' defaults, and a config with bigger models says so (`context_window`).
DEFAULT_CONTEXT_WINDOW = 32_768

ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
NOT_AN_ENV_NAME = "must be the NAME of an environment variable, never the key itself"


def env_name(value: str | None) -> str | None:
    """`value` if it can name an environment variable (a key variable in a config or flag)."""
    if value is not None and not ENV_NAME.match(value):
        raise ValueError(NOT_AN_ENV_NAME)
    return value


class Pricing(Strict):
    input_per_1m_tokens: float | None = Field(default=None, ge=0)
    output_per_1m_tokens: float | None = Field(default=None, ge=0)
    currency: str = "USD"

    def cost(self, input_tokens: int, output_tokens: int) -> float | None:
        """What that many tokens cost, in `currency`; None when the price is not configured."""
        if self.input_per_1m_tokens is None or self.output_per_1m_tokens is None:
            return None
        return (input_tokens * self.input_per_1m_tokens + output_tokens * self.output_per_1m_tokens) / 1_000_000


class Capabilities(Strict):
    """What the endpoint supports; null means "assume the provider's usual"."""

    structured_output: bool | None = None
    tool_calls: bool | None = None
    streaming: bool | None = None


class MockSettings(Strict):
    """Behaviour of the offline `mock` provider.

    `knows` names a task set (JSONL, the format of `fusionkit eval`) whose answers this mock knows; it
    answers each of those tasks correctly with probability `accuracy` (one number, or one per task
    category with `default` for the rest), drawn per task from `seed` (bridge/adapters/mock_knowledge.py).
    """

    latency_ms: float = Field(default=0, ge=0)
    tokens_per_s: float = Field(default=0, ge=0)
    fail_rate: Probability = 0.0
    seed: int = 0
    knows: str | None = None
    accuracy: float | dict[str, float] = 1.0

    @field_validator("accuracy")
    @classmethod
    def _probabilities(cls, value: float | dict[str, float]) -> float | dict[str, float]:
        values = value.values() if isinstance(value, dict) else [value]
        if any(not 0 <= v <= 1 for v in values):
            raise ValueError("a probability between 0 and 1, or a mapping of task category to one")
        return value

    @model_validator(mode="after")
    def _knows_a_file(self) -> MockSettings:
        if self.knows is not None and not os.path.isfile(self.knows):
            raise ValueError(f"'knows' names no task file: {self.knows!r} (a path relative to the working directory)")
        if self.accuracy != 1.0 and self.knows is None:
            raise ValueError("'accuracy' needs 'knows': the task set whose answers the mock knows")
        return self


class EndpointConfig(Strict):
    id: str
    provider: Provider
    model: str = Field(min_length=1)
    base_url: str | None = None
    api_key_env: str | None = None
    timeout_s: float = Field(default=120, gt=0)
    # The model's context window in tokens: what the judge's and synthesizer's requests are packed into
    # (server/engine/packing.py). Null: DEFAULT_CONTEXT_WINDOW.
    context_window: int | None = Field(default=None, ge=256)
    port: int | None = Field(default=None, ge=1, le=65535)
    pricing: Pricing = Field(default_factory=Pricing)
    capabilities: Capabilities = Field(default_factory=Capabilities)
    mock: MockSettings = Field(default_factory=MockSettings)

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not ENDPOINT_ID.match(value):
            raise ValueError(
                f"allowed: 1 to {ENDPOINT_ID_MAX} characters, each a letter, digit, '.', '_' or '-' "
                f"(found {len(value)} characters)"
            )
        return value

    @field_validator("base_url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            parts = urllib.parse.urlsplit(value)
            _ = parts.port  # raises on a port that is not a number in range
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("allowed: an http:// or https:// URL with a host, e.g. http://127.0.0.1:8000/v1")
        return value

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        return env_name(value)

    @model_validator(mode="after")
    def _needs_base_url(self) -> EndpointConfig:
        if self.provider == "openai-compatible" and not self.base_url:
            raise ValueError("provider 'openai-compatible' needs 'base_url'")
        return self

    @property
    def is_mock(self) -> bool:
        return self.provider == "mock"

    @property
    def needs_key(self) -> bool:
        """Whether calls fail without an API key: a real provider, or a server that names its key variable."""
        return self.provider in KEYED_PROVIDERS or (self.provider == "openai-compatible" and bool(self.api_key_env))

    def api_key(self) -> str | None:
        """The key from the environment, read only when a client is built."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None

    @property
    def window(self) -> int:
        """The context window in tokens, declared or assumed."""
        return self.context_window or DEFAULT_CONTEXT_WINDOW

    def supports_structured_output(self) -> bool:
        if self.capabilities.structured_output is not None:
            return self.capabilities.structured_output
        return self.provider in ("openai", "mock")
