"""Provider adapters. `make_adapter` imports a provider's SDK only when that provider is used."""

from __future__ import annotations

from typing import Literal

from bridge.adapters.base import CallContext, ChatAdapter
from bridge.endpoint import EndpointConfig

__all__ = ["CallContext", "ChatAdapter", "make_adapter"]


def make_adapter(endpoint: EndpointConfig, *, openai_transport: Literal["sdk", "aiohttp"] = "sdk") -> ChatAdapter:
    """Build the adapter for one endpoint; the SDK import happens here, not at module load.

    `openai_transport` is how the openai adapter sends requests (bridge/adapters/openai_transport.py).
    """
    if endpoint.provider == "mock":
        from bridge.adapters.mock import MockAdapter

        return MockAdapter(endpoint)
    if endpoint.provider in ("openai", "openai-compatible"):
        from bridge.adapters.openai_adapter import OpenAIAdapter

        return OpenAIAdapter(endpoint, transport=openai_transport)
    if endpoint.provider == "anthropic":
        from bridge.adapters.anthropic_adapter import AnthropicAdapter

        return AnthropicAdapter(endpoint)
    if endpoint.provider == "google":
        from bridge.adapters.google_adapter import GoogleAdapter

        return GoogleAdapter(endpoint)
    raise ValueError(f"unknown provider {endpoint.provider!r}")
