"""What every stand-in shares: it records the requests it got, counts requests in flight, and can be
told to answer the next requests with an error or after a delay.

    state = StandinState()
    state.fail_next(429, {"error": {...}}, headers={"Retry-After": "7"})
    app = create_openai_standin(state)
    ...
    assert state.requests[-1]["temperature"] == 0
    assert state.max_in_flight == 8
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ScriptedError", "StandinState"]


@dataclass
class ScriptedError:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class StandinState:
    """Shared, inspectable state of one stand-in server."""

    delay_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    errors: deque[ScriptedError] = field(default_factory=deque)
    # Behaviour switches the stand-ins read (each documents which it honours).
    answer: str | None = None  # replaces the computed answer text ("" for an empty answer)
    answers: list[str] = field(default_factory=list)  # answers for the next requests, in turn (before `answer`)
    stream_fault: str | None = None  # "error_frame" or "truncate": break a stream after its first chunks
    finish: str | None = None  # the provider's own finish/stop reason to report
    rogue_tool: str | None = None  # call a tool of this name, whatever tools the request offers

    def fail_next(
        self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None, times: int = 1
    ) -> None:
        for _ in range(times):
            self.errors.append(ScriptedError(status, body, headers or {}))

    @asynccontextmanager
    async def handling(
        self, path: str, body: dict[str, Any], headers: dict[str, str]
    ) -> AsyncIterator[ScriptedError | None]:
        """Record one request and keep it counted as in flight; yields the scripted error to answer with, if any."""
        self.requests.append(body)
        self.headers.append(headers)
        self.paths.append(path)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            yield self.errors.popleft() if self.errors else None
        finally:
            self.in_flight -= 1
