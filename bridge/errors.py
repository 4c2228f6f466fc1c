"""Errors that become OpenAI error responses.

Every failure a client can see is an `APIError`: an HTTP status, an OpenAI error body
(`{"error": {"message", "type", "param", "code"}}`) and, for rate limits, the upstream's
`Retry-After`. Adapters raise these at the boundary that knows why a call failed.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
    "bad_request",
    "error_body",
    "from_openai_status",
    "key_path",
    "not_found",
    "not_ready",
    "rate_limited",
    "redact",
    "timed_out",
    "upstream_auth",
    "upstream_failure",
]


class APIError(Exception):
    """A failure with the HTTP status and OpenAI error body a client should see."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str,
        code: str | None = None,
        param: str | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after
        # The router's run this failure ended, so a client can look the run up (an extra field of the body).
        self.run_id: str | None = None
        # More of why, as extra fields of the error object (the members that failed and their reasons).
        self.details: dict[str, Any] = {}

    def body(self) -> dict[str, Any]:
        body = error_body(self.message, self.type, code=self.code, param=self.param)
        body["error"].update(self.details)
        if self.run_id is not None:
            body["error"]["run_id"] = self.run_id
        return body

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.run_id is not None:
            headers["x-fusion-run-id"] = self.run_id
        if self.retry_after is not None:
            headers["Retry-After"] = self.retry_after
        if self.status not in (408, 409, 429) and self.status < 500:
            # The openai SDK retries 408/409/429/5xx; say so explicitly for everything else.
            headers["x-should-retry"] = "false"
        return headers

    def __repr__(self) -> str:
        return f"APIError({self.status}, {self.message!r}, code={self.code!r})"


def error_body(message: str, type: str, *, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(message: str, *, param: str | None = None, code: str | None = "invalid_request") -> APIError:
    return APIError(400, message, type="invalid_request_error", code=code, param=param)


def upstream_auth(message: str, status: int = 401) -> APIError:
    kind = "authentication_error" if status == 401 else "permission_error"
    return APIError(status, message, type=kind, code="upstream_" + kind)


def not_found(message: str, *, code: str = "model_not_found") -> APIError:
    return APIError(404, message, type="not_found_error", code=code)


def timed_out(message: str, status: int = 504) -> APIError:
    return APIError(status, message, type="timeout_error", code="upstream_timeout")


def rate_limited(message: str, retry_after: str | None = None) -> APIError:
    return APIError(429, message, type="rate_limit_error", code="rate_limit_exceeded", retry_after=retry_after)


def upstream_failure(message: str, status: int = 502) -> APIError:
    return APIError(status, message, type="upstream_error", code="upstream_failure")


def not_ready(message: str) -> APIError:
    return APIError(503, message, type="service_unavailable", code="not_ready")


REDACTED = "[redacted]"


def redact(text: str, secret: str | None) -> str:
    """`text` with every occurrence of `secret` (an API key an upstream echoed back) replaced."""
    return text.replace(secret, REDACTED) if secret else text


def key_path(loc: tuple[int | str, ...] | list[int | str]) -> str:
    """A pydantic error location as a key path: ('endpoints', 2, 'provider') -> endpoints[2].provider."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def from_openai_status(status: int, body: object, retry_after: str | None, label: str = "upstream") -> APIError:
    """An OpenAI-compatible upstream's error response as the error our client should see."""
    error = body.get("error") if isinstance(body, dict) else None
    details = error if isinstance(error, dict) else (body if isinstance(body, dict) else {})
    message = f"{label}: {details.get('message') or f'HTTP {status}'}"
    if status == 400:
        return bad_request(message, param=details.get("param"), code=details.get("code") or "upstream_bad_request")
    if status in (401, 403):
        return upstream_auth(message, status)
    if status == 404:
        return not_found(message)
    if status == 408:
        return timed_out(message, 504)
    if status in (409, 413, 422):
        return APIError(status, message, type="invalid_request_error", code=details.get("code"))
    if status == 429:
        return rate_limited(message, retry_after)
    return upstream_failure(message, 502)
