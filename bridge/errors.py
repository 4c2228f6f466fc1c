"""Errors that become OpenAI error responses.

Every failure a client can see is an `APIError`: an HTTP status, an OpenAI error body
(`{"error": {"message", "type", "param", "code"}}`) and, for rate limits, the upstream's
`Retry-After`. Adapters raise these at the boundary that knows why a call failed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "APIError",
    "InvalidParam",
    "Problem",
    "ValidationDescription",
    "bad_request",
    "conflict",
    "describe_validation_error",
    "error_body",
    "from_openai_status",
    "from_status",
    "key_path",
    "not_found",
    "not_ready",
    "rate_limited",
    "redact",
    "stream_cut_short",
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
        # Whether a client may send the request again; None leaves it to the SDKs' rule by status.
        self.retryable: bool | None = None

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
        retryable = self.retryable
        if retryable is None:
            retryable = self.status in (408, 409, 429) or self.status >= 500
        if not retryable:
            # The openai SDK retries 408/409/429/5xx; say so explicitly for everything else.
            headers["x-should-retry"] = "false"
        return headers

    def __repr__(self) -> str:
        return f"APIError({self.status}, {self.message!r}, code={self.code!r})"


def error_body(message: str, type: str, *, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(message: str, *, param: str | None = None, code: str | None = "invalid_request") -> APIError:
    return APIError(400, message, type="invalid_request_error", code=code, param=param)


def conflict(message: str, *, code: str, param: str | None = None) -> APIError:
    """409: the request is fine but the resource is not in a state that allows it (a run not waiting, a
    reused idempotency key). The openai SDK retries 409s; the state may well have moved on by then."""
    return APIError(409, message, type="invalid_request_error", code=code, param=param)


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


def stream_cut_short() -> APIError:
    """A stream that stopped without a finish reason: a failure, not a short answer."""
    return upstream_failure("upstream stream ended before the answer was complete")


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


def from_status(
    status: int, message: str, *, code: str | None = None, param: str | None = None, retry_after: str | None = None
) -> APIError:
    """An upstream's HTTP failure as the error our client should see, after the provider's own special cases.

    Statuses are kept faithful (docs/bridge.md, "Error mapping"): 400 (with the upstream's `param` and
    `code`), 401/403, 404, 408 and 504 as a 504 timeout, 429 with its `Retry-After`, any other 4xx
    as it is; anything else is the upstream's failure, a 502, never ours.
    """
    if status == 400:
        return bad_request(message, param=param, code=code or "upstream_bad_request")
    if status in (401, 403):
        return upstream_auth(message, status)
    if status == 404:
        return not_found(message)
    if status in (408, 504):
        return timed_out(message)
    if status == 429:
        return rate_limited(message, retry_after)
    if 400 < status < 500:
        # 409/413/422, billing (402) and the like: the client's problem, kept as it is and not
        # retryable; a 502 would tell every OpenAI SDK to try again.
        return APIError(status, message, type="invalid_request_error", code=code)
    return upstream_failure(message)


def from_openai_status(status: int, body: object, retry_after: str | None, label: str = "upstream") -> APIError:
    """An OpenAI-compatible upstream's error response (its status and `{"error": {...}}` body) as our error."""
    error = body.get("error") if isinstance(body, dict) else None
    details = error if isinstance(error, dict) else (body if isinstance(body, dict) else {})
    message = f"{label}: {details.get('message') or f'HTTP {status}'}"
    return from_status(status, message, code=details.get("code"), param=details.get("param"), retry_after=retry_after)


class InvalidParam(ValueError):
    """A check across fields that names the request field at fault, for the error's `param`."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Problem:
    """One problem of a validation error, located by the key path the user wrote (`messages[0].content`)."""

    loc: tuple[str | int, ...]
    message: str
    type: str
    context: Mapping[str, Any] = field(default_factory=dict)  # pydantic's `ctx`: `expected`, `error`, ...

    @property
    def path(self) -> str:
        return key_path(self.loc)

    @property
    def cause(self) -> BaseException | None:
        """What a validator raised (an InvalidParam, a config's reference error), when one did."""
        error = self.context.get("error")
        return error if isinstance(error, BaseException) else None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


@dataclass(frozen=True)
class ValidationDescription:
    """Every problem of one validation error, in pydantic's order."""

    problems: tuple[Problem, ...]

    @property
    def first(self) -> Problem:
        return self.problems[0] if self.problems else Problem((), "invalid request", "value_error")

    def summary(self) -> str:
        """One line for an HTTP error: the first problem, and how many more there are."""
        more = len(self.problems) - 1
        return str(self.first) + (f" (and {more} more problems)" if more > 0 else "")


def describe_validation_error(errors: Sequence[Mapping[str, Any]], data: Any = None) -> ValidationDescription:
    """A pydantic error list (`ValidationError.errors()`) as problems located by the user's key paths.

    Pydantic's locations also name union members (`str`, `list[ContentPart]`), discriminator tags and
    validators; with the validated `data`, each location is walked through it and only the keys and
    indexes the user wrote are kept (plus the key a "missing" error names). Without it (None),
    locations are taken as they are.
    """
    problems = []
    for error in errors:
        loc = tuple(error.get("loc", ()))
        kind = str(error.get("type", "value_error"))
        if data is not None:
            loc = _user_loc(loc, data, missing=kind == "missing")
        ctx = error.get("ctx")
        context = dict(ctx) if isinstance(ctx, Mapping) else {}
        cause = context.get("error")
        if not loc and isinstance(cause, InvalidParam):
            loc = (cause.param,)
        message = str(error.get("msg", "invalid request")).removeprefix("Value error, ")
        problems.append(Problem(loc, message, kind, context))
    return ValidationDescription(tuple(problems))


def _user_loc(loc: tuple[Any, ...], data: Any, *, missing: bool) -> tuple[str | int, ...]:
    kept: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if _has(node, part):
            kept.append(part)
            node = node[part]
        elif missing and i == len(loc) - 1 and isinstance(part, str) and isinstance(node, dict):
            kept.append(part)  # the key that is missing
    return tuple(kept)


def _has(node: Any, part: Any) -> bool:
    if isinstance(node, list):
        return isinstance(part, int) and -len(node) <= part < len(node)
    return isinstance(node, dict) and isinstance(part, str) and part in node
