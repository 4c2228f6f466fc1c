"""Key auth for the router's /v1 routes, on when `server.api_key_env` names a set variable."""

from __future__ import annotations

import hmac

from fastapi import Request

from bridge.errors import APIError

__all__ = ["BearerAuth"]


class BearerAuth:
    """Checks `Authorization: Bearer <key>`, or `x-api-key: <key>` as Anthropic clients send it, in constant
    time; a no-op when no key is configured."""

    def __init__(self, key: str | None) -> None:
        self._key = key.encode() if key else None

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
