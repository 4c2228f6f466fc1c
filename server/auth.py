"""Bearer auth for the router's /v1 routes, on when `server.api_key_env` names a set variable."""

from __future__ import annotations

import hmac

from fastapi import Request

from bridge.errors import APIError

__all__ = ["BearerAuth"]


class BearerAuth:
    """Checks `Authorization: Bearer <key>` in constant time; a no-op when no key is configured."""

    def __init__(self, key: str | None) -> None:
        self._key = key.encode() if key else None

    @property
    def enabled(self) -> bool:
        return self._key is not None

    async def __call__(self, request: Request) -> None:
        if self._key is None:
            return
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._key):
            raise APIError(401, "missing or invalid bearer token", type="authentication_error", code="invalid_api_key")
