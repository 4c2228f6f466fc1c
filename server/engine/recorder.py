"""The engine's view of run recording: state transitions, events and artifacts.

The router implements it over the SQLite store and the trace emitter (`server.runs`); tests
and direct callers can use `MemoryRecorder`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

__all__ = ["MemoryRecorder", "Recorder"]


class Recorder(Protocol):
    run_id: str
    trace_id: str
    sampled: bool  # is the run's trace recorded? (its model calls pass that on in their `traceparent`)

    async def transition(self, state: str, payload: dict[str, Any] | None = None) -> int: ...

    async def event(self, type: str, payload: dict[str, Any]) -> int: ...

    async def artifact(self, content: str, media_type: str = "text/plain") -> str: ...


class MemoryRecorder:
    """Keeps everything in lists: for tests and one-shot callers that need no store."""

    def __init__(self, run_id: str = "run_memory", trace_id: str = "trace_memory") -> None:
        self.run_id = run_id
        self.trace_id = trace_id
        self.sampled = True
        self.events: list[tuple[int, str, dict[str, Any]]] = []
        self.states: list[str] = []
        self.artifacts: dict[str, str] = {}

    async def transition(self, state: str, payload: dict[str, Any] | None = None) -> int:
        self.states.append(state)
        return await self.event("run.state", {"state": state, **(payload or {})})

    async def event(self, type: str, payload: dict[str, Any]) -> int:
        self.events.append((len(self.events) + 1, type, payload))
        return len(self.events)

    async def artifact(self, content: str, media_type: str = "text/plain") -> str:
        digest = hashlib.sha256(content.encode()).hexdigest()
        self.artifacts[digest] = content
        return digest
