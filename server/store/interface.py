"""The run store's interface: what the router, the CLI and the tests may ask of a store, whatever its backend.

    store: RunStoreAPI = open_store(".fusionkit/runs.sqlite3")     # RunStore (SQLite)
    store: RunStoreAPI = open_store("postgresql://fk@db/fusionkit") # PgRunStore (PostgreSQL)

Both implementations (server.store.runstore.RunStore, server.store.pgstore.PgRunStore) share their
behaviour through server.store.batching.BatchingStore and are held to it by the same test suite;
docs/run-store.md describes it.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, Self

from server.store.records import ArtifactRecord, EventRecord, RunRecord, RunState, StoreHealth
from server.store.relay import CommandRelay

__all__ = ["RunStoreAPI"]


class RunStoreAPI(Protocol):
    """Runs, their append-only events, idempotency keys, artifacts and leases."""

    location: str  # where it lives, for people and logs (a path, or a URL without its password)
    owner_id: str  # this store's owner id: the runs it creates are its own, under its lease
    on_batch: Callable[[int], None] | None  # told the size of each batch written (the router's metrics)
    relay: CommandRelay | None  # cancels and tool results for runs other routers execute (None: none)
    lapse_check_s: float | None  # how often to look for lapsed leases between renewals (None: at each renewal)

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def create_run(
        self,
        run_id: str,
        *,
        mode: str | None,
        request: dict[str, Any],
        trace_id: str | None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
        state: RunState = "queued",
    ) -> RunRecord: ...

    async def append_event(self, run_id: str, type: str, payload: dict[str, Any]) -> int: ...

    def record_event(
        self, run_id: str, seq: int, type: str, payload: dict[str, Any], *, lost: Callable[[], None] | None = None
    ) -> None: ...

    async def transition(
        self,
        run_id: str,
        state: str,
        *,
        event_type: str = "run.state",
        payload: dict[str, Any] | None = None,
        summary_update: dict[str, Any] | None = None,
        terminal_reason: str | None = None,
        seq: int | None = None,
        lost: Callable[[], None] | None = None,
    ) -> int: ...

    def record_transition(
        self,
        run_id: str,
        seq: int,
        state: str,
        payload: dict[str, Any] | None = None,
        *,
        lost: Callable[[], None] | None = None,
    ) -> None: ...

    async def get_run(self, run_id: str) -> RunRecord | None: ...

    async def find_by_idempotency_key(self, key: str) -> RunRecord | None: ...

    async def list_runs(self, limit: int = 20, before: str | None = None) -> list[RunRecord]: ...

    async def events(self, run_id: str, after: int = 0, limit: int = 100) -> list[EventRecord]: ...

    async def event_cursors(self, run_ids: list[str]) -> dict[str, int]: ...

    async def wait_for_events(self, run_id: str, after: int, wait_s: float) -> None: ...

    async def put_artifact(
        self, content: bytes | str, media_type: str = "text/plain", *, run_id: str | None = None
    ) -> str: ...

    def record_artifact(
        self, content: bytes | str, media_type: str, run_id: str, *, lost: Callable[[], None] | None = None
    ) -> str: ...

    async def link_artifact(self, run_id: str, sha256: str) -> None: ...

    async def get_artifact(self, sha256: str) -> ArtifactRecord | None: ...

    async def renew_lease(self, lease_s: float, holder: str) -> None: ...

    async def expire_lapsed(self, reason: str = "lease_expired") -> list[str]: ...

    async def release_lease(self, reason: str = "router_stopped") -> list[str]: ...

    async def prune(
        self, older_than_days: float | None = None, *, keep_runs: int | None = None, limit: int | None = None
    ) -> int: ...

    async def flush(self) -> None: ...

    @property
    def unavailable(self) -> bool: ...

    def health(self) -> StoreHealth: ...

    @property
    def queue_depth(self) -> int: ...

    async def close(self) -> None: ...
