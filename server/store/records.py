"""What the run store holds, as the rest of the router sees it: run states, run ids and the records it returns."""

from __future__ import annotations

import re
import secrets
from typing import Any, Literal, get_args

from pydantic import BaseModel

__all__ = [
    "RUN_STATES",
    "TERMINAL_STATES",
    "ArtifactRecord",
    "EventRecord",
    "RunRecord",
    "RunState",
    "StoreHealth",
    "is_valid_run_id",
    "new_run_id",
]

# queued → generating → (requires_action) → judging → synthesizing → (verifying) → a terminal state.
RunState = Literal[
    "queued",
    "generating",
    "requires_action",
    "judging",
    "synthesizing",
    "verifying",
    "completed",
    "failed",
    "cancelled",
    "expired",
]
RUN_STATES: frozenset[str] = frozenset(get_args(RunState))
TERMINAL_STATES: frozenset[str] = frozenset({"completed", "failed", "cancelled", "expired"})

_RUN_ID = re.compile(r"run_[0-9a-f]{24}")


def new_run_id() -> str:
    """A fresh run id: `run_` and 24 random hex digits."""
    return f"run_{secrets.token_hex(12)}"


def is_valid_run_id(value: object) -> bool:
    """True only for the exact shape `new_run_id` makes, so the HTTP layer can refuse anything else unread."""
    # fullmatch, not `$`: `$` also matches before a trailing newline.
    return isinstance(value, str) and _RUN_ID.fullmatch(value) is not None


class RunRecord(BaseModel):
    """One row of `runs`: the run's state and the summary the router keeps up to date."""

    run_id: str
    created_at: str
    updated_at: str
    state: RunState
    mode: str | None
    trace_id: str | None
    idempotency_key: str | None
    request_hash: str | None
    request: dict[str, Any]
    summary: dict[str, Any]
    terminal_reason: str | None
    owner_id: str | None = None  # the router holding the run's lease (None: recorded before leases existed)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES


class EventRecord(BaseModel):
    """One entry of a run's append-only event log; `seq` counts from 1 without gaps."""

    run_id: str
    seq: int
    ts: str
    type: str
    payload: dict[str, Any]


class ArtifactRecord(BaseModel):
    """Content stored once under its sha256 (candidate texts, judge replies, syntheses)."""

    sha256: str
    media_type: str
    size: int
    content: bytes
    created_at: str

    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class StoreHealth(BaseModel):
    """Whether the store can be written, as `/health` reports it.

    `degraded` from the first write that fails because the store cannot be written (a full disk, a
    read-only, missing or replaced file, a lock held too long) until the next write that succeeds.
    """

    status: Literal["ok", "degraded"]
    error: str | None = None  # what went wrong, without the file's path
    since: str | None = None  # when the store became degraded
    lost_writes: int = 0  # writes dropped since then (events of runs that will be recorded as failed)
