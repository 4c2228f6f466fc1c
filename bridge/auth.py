"""Key auth, shared by the router (`server.api_key_env`) and the bridge (`--auth-key-env`).

A key comes from an environment variable the operator names. A named variable that is unset or
empty is an error, never "auth off": a typo in a variable name must not open a server to anyone.

    auth = BearerAuth.from_env("FK_ROUTER_KEY")     # MissingKeyError if named but unset or empty
    router = APIRouter(prefix="/v1", dependencies=[Depends(auth)])
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping

# FastAPI's own Request (it re-exports Starlette's): the CLI checks keys with this module before any
# server starts, and `fusionkit up` should not import all of FastAPI to do so.
from starlette.requests import Request

from bridge.endpoint import ENV_NAME, NOT_AN_ENV_NAME
from bridge.errors import APIError

__all__ = ["BearerAuth", "MissingKeyError", "key_from_env"]


class MissingKeyError(ValueError):
    """A key variable that is named but unset or empty, or is no variable name at all."""

    def __init__(self, variable: str) -> None:
        if ENV_NAME.match(variable):
            message = f"environment variable {variable} is not set (or is empty)"
        else:  # not echoed: it may be the key itself, put where its variable's name belongs
            message = NOT_AN_ENV_NAME
        super().__init__(message)
        self.variable = variable


def key_from_env(variable: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The key in `variable`; None when no variable is named; MissingKeyError when it is named but empty."""
    if not variable:
        return None
    value = (os.environ if environ is None else environ).get(variable, "")
    if not ENV_NAME.match(variable) or not value.strip():
        raise MissingKeyError(variable)
    return value


class BearerAuth:
    """Checks `Authorization: Bearer <key>`, or `x-api-key: <key>` as Anthropic clients send it, in constant
    time; a no-op when no key is configured."""

    def __init__(self, key: str | None) -> None:
        self._key = key.encode() if key else None

    @classmethod
    def from_env(cls, variable: str | None) -> BearerAuth:
        return cls(key_from_env(variable))

    @property
    def enabled(self) -> bool:
        return self._key is not None

    async def __call__(self, request: Request) -> None:
        if self._key is None:
            return
        scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
        offered = [bearer.strip() if scheme.lower() == "bearer" else "", request.headers.get("x-api-key", "").strip()]
        # Every offered key is compared, so the time taken says nothing about which header held what.
        matches = [hmac.compare_digest(token.encode(), self._key) for token in offered if token]
        if not any(matches):
            raise APIError(
                401,
                "missing or invalid API key (send Authorization: Bearer <key> or x-api-key: <key>)",
                type="authentication_error",
                code="invalid_api_key",
            )
