"""The provider keys a panel config needs, checked before anything starts.

A real-provider endpoint without its key only shows up when every call to it fails with 401;
`validate` warns about it and `up` refuses to start it (unless `--allow-missing-keys`).

    for missing in missing_provider_keys(config):
        print(f"{path}: {missing}")   # endpoints[1].api_key_env: endpoint 'claude' (anthropic) reads ...
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from server.config import PanelConfig

__all__ = ["MissingProviderKey", "missing_provider_keys"]


@dataclass(frozen=True)
class MissingProviderKey:
    index: int
    endpoint_id: str
    provider: str
    variable: str | None  # None: the endpoint names no key variable at all

    def __str__(self) -> str:
        where = f"endpoints[{self.index}].api_key_env: endpoint '{self.endpoint_id}' ({self.provider})"
        if self.variable is None:
            return f"{where} names no key variable; allowed: the NAME of the variable that holds its API key"
        return f"{where} reads its key from {self.variable}, which is not set (or is empty)"


def missing_provider_keys(config: PanelConfig, environ: Mapping[str, str] | None = None) -> list[MissingProviderKey]:
    """Endpoints whose calls need a key that the environment does not hold."""
    environ = os.environ if environ is None else environ
    return [
        MissingProviderKey(i, endpoint.id, endpoint.provider, endpoint.api_key_env)
        for i, endpoint in enumerate(config.endpoints)
        if endpoint.needs_key and not (endpoint.api_key_env and environ.get(endpoint.api_key_env, "").strip())
    ]
