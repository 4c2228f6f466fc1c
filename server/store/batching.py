"""What both run stores share: the public API over one queue of work, group commit, and a store that cannot be written.

    class SqliteRunStore(BatchingStore[SqliteWork]):     # server.store.runstore.RunStore
        def _dispatch(self, batch): ...                  # run the batch in one transaction, say how it went
        def _event_work(self, run_id, type, payload_json, seq): ...   # and the other `_*_work` factories: SQL

A backend supplies what each call does to its database (a "work": a callable over its connection)
and how a batch of works runs in one transaction (`_dispatch`). Everything else is here, once:
every call becomes a job on one first-in first-out queue; whatever is queued while a batch is in
flight goes over as the next batch, written in one transaction with each job in its own
savepoint (a job that fails undoes only itself). A read queues behind the writes before it, so it
sees them. When the database cannot be used every job of the batch fails with StoreUnavailable,
the store says degraded until a write commits again, and a run that lost a write is recorded as
failed then (never left with a hole in its log). Waiters on a run's events (`wait_for_events`)
are woken when a batch that wrote to the run commits here, or when the backend hears that another
process did (`_wake`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar

from server.store.errors import StoreClosed, StoreUnavailable
from server.store.records import (
    RUN_STATES,
    ArtifactRecord,
    EventRecord,
    RunRecord,
    RunState,
    StoreHealth,
    is_valid_run_id,
)
from server.store.relay import CommandRelay
from server.store.schema import now

__all__ = ["STORE_FAILED", "BatchingStore", "Job", "Outcome", "dumps", "event_record", "run_record", "store_failure"]

W = TypeVar("W")  # what one job does to the backend's connection
T = TypeVar("T")

log = logging.getLogger("fusionkit.store")

STORE_FAILED = "store_unavailable"  # the terminal reason of a run that lost writes while the store was unavailable


def dumps(value: Any) -> str:
    # Anything JSON cannot encode is recorded as its text, not refused; ASCII escapes keep a client's lone
    # surrogate (valid JSON, invalid UTF-8) from failing the transaction.
    return json.dumps(value, default=str)


class Row(Protocol):
    """A database row read by column name (sqlite3.Row, psycopg's dict rows)."""

    def __getitem__(self, key: str) -> Any: ...


def run_record(row: Row, stamp: Callable[[Any], str] = str) -> RunRecord:
    """A `runs` row as a RunRecord; `stamp` turns the backend's times into the store's ISO 8601 text."""
    return RunRecord(
        run_id=row["run_id"],
        created_at=stamp(row["created_at"]),
        updated_at=stamp(row["updated_at"]),
        state=row["state"],
        mode=row["mode"],
        trace_id=row["trace_id"],
        idempotency_key=row["idempotency_key"],
        request_hash=row["request_hash"],
        request=json.loads(row["request_json"]),
        summary=json.loads(row["summary_json"]),
        terminal_reason=row["terminal_reason"],
        owner_id=row["owner_id"],
    )


def event_record(row: Row, stamp: Callable[[Any], str] = str) -> EventRecord:
    return EventRecord(
        run_id=row["run_id"],
        seq=row["seq"],
        ts=stamp(row["ts"]),
        type=row["type"],
        payload=json.loads(row["payload_json"]),
    )


def check_state(state: str) -> None:
    if state not in RUN_STATES:
        raise ValueError(f"unknown run state {state!r}; expected one of {sorted(RUN_STATES)}")


def store_failure(reason: str) -> dict[str, Any]:
    """The error recorded on a run that lost writes while the store could not be written."""
    return {
        "message": f"the run store could not record this run ({reason}); its record is incomplete",
        "type": "server_error",
        "code": STORE_FAILED,
    }


@dataclass(slots=True)
class Job(Generic[W]):
    """One call's work for the backend, and who waits for it (nobody: a failure is logged)."""

    work: W
    writes: bool
    future: asyncio.Future[Any] | None
    what: str
    run_id: str | None = None  # the existing run it writes to: one that loses a write is failed, not left with a hole
    lost: Callable[[], None] | None = None  # told when the write is dropped because the store could not take it


@dataclass(slots=True)
class Outcome:
    """What one batch came to: each job's (ok, result or exception), and what it says about the store."""

    results: list[tuple[bool, Any]]
    committed: bool = False  # it wrote, and the transaction committed: the store can be written
    unavailable: str | None = None  # it failed because the store cannot be used right now (why)


@dataclass(slots=True)
class _Degraded:
    """Since when and why the store cannot be written, and what that has cost so far."""

    reason: str
    since: str = field(default_factory=now)
    started: float = field(default_factory=time.monotonic)
    lost_writes: int = 0


class BatchingStore(ABC, Generic[W]):
    """Runs, their append-only events, idempotency keys, artifacts and leases over one queue of work.

    Subclasses name where the data lives (`location`, for log lines) and supply the works; the
    public methods, their checks and their failure handling are the same for every backend.
    """

    # How often a waiter on a run's events looks again without being woken: writes of another process
    # that this store is not told about (SQLite) are seen within this long.
    poll_s: float = 1.0
    # Cancels and tool results for runs another process executes (None: only this process's runs).
    relay: CommandRelay | None = None
    # How often a router looks for lapsed leases between renewals (None: when it renews, every lease_s / 3).
    lapse_check_s: float | None = None

    def __init__(self, location: str) -> None:
        self.location = location
        self.owner_id = f"owner_{secrets.token_hex(8)}"
        self._closed = False  # no new work is taken
        self._queue: list[Job[W]] = []
        # Told the size of each batch handed to the database (the router's metrics).
        self.on_batch: Callable[[int], None] | None = None
        self._flush_scheduled = False
        self._in_flight = False
        self._degraded: _Degraded | None = None
        self._damaged: dict[str, str] = {}  # runs that lost a write, not yet recorded as failed: why
        self._failing_damaged = False
        self._watchers: dict[str, set[asyncio.Event]] = {}

    @property
    def queue_depth(self) -> int:
        """Calls waiting for the database (the batch being written now not counted)."""
        return len(self._queue)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- what a backend supplies ------------------------------------------------------------------

    @abstractmethod
    def _dispatch(self, batch: list[Job[W]]) -> Awaitable[Outcome]:
        """Run `batch` in order, its writes in one transaction; never fails (every job gets an outcome)."""

    @abstractmethod
    def _nothing(self) -> W:
        """A work that does nothing: queued last on close, it is done once everything before it is."""

    @abstractmethod
    async def _shutdown(self) -> None:
        """Close the connection(s) for good, once the queue is empty."""

    @abstractmethod
    def _create_work(
        self,
        run_id: str,
        mode: str | None,
        request_json: str,
        trace_id: str | None,
        idempotency_key: str | None,
        request_hash: str | None,
        state: str,
    ) -> W: ...

    @abstractmethod
    def _event_work(self, run_id: str, type: str, payload_json: str, seq: int | None) -> W: ...

    @abstractmethod
    def _transition_work(
        self,
        run_id: str,
        state: str,
        event_type: str,
        payload_json: str,
        summary_update: dict[str, Any] | None,
        terminal_reason: str | None,
        seq: int | None,
    ) -> W: ...

    @abstractmethod
    def _artifact_work(self, digest: str, data: bytes, media_type: str, run_id: str | None) -> W: ...

    @abstractmethod
    def _link_work(self, run_id: str, sha256: str) -> W: ...

    @abstractmethod
    def _get_run_work(self, run_id: str) -> W: ...

    @abstractmethod
    def _find_by_key_work(self, key: str) -> W: ...

    @abstractmethod
    def _list_runs_work(self, limit: int, before: str | None) -> W: ...

    @abstractmethod
    def _events_work(self, run_id: str, after: int, limit: int) -> W: ...

    @abstractmethod
    def _cursors_work(self, run_ids: list[str]) -> W: ...

    @abstractmethod
    def _get_artifact_work(self, sha256: str) -> W: ...

    @abstractmethod
    def _renew_work(self, lease_s: float, holder: str) -> W: ...

    @abstractmethod
    def _expire_lapsed_work(self, reason: str) -> W: ...

    @abstractmethod
    def _release_work(self, reason: str) -> W: ...

    @abstractmethod
    def _prune_work(self, older_than_days: float | None, keep_runs: int | None, limit: int | None) -> W: ...

    @abstractmethod
    def _fail_damaged_work(self, runs: dict[str, str]) -> W:
        """Record each run in `runs` (id: why) that has not ended as failed; the work returns their ids."""

    # -- the queue --------------------------------------------------------------------------------

    def _enqueue(
        self,
        work: W,
        *,
        writes: bool,
        wait: bool,
        what: str,
        run_id: str | None = None,
        lost: Callable[[], None] | None = None,
    ) -> Any:
        if self._closed:
            raise StoreClosed(f"the run store {self.location} is closed")
        return self._push(Job(work, writes, None, what, run_id, lost), wait=wait)

    def _push(self, job: Job[W], *, wait: bool) -> Any:
        loop = asyncio.get_running_loop()
        job.future = loop.create_future() if wait else None
        self._queue.append(job)
        if not self._flush_scheduled and not self._in_flight:
            # Not at once: every job queued in this turn of the event loop joins the same batch.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return job.future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._in_flight or not self._queue:
            return
        batch: list[Job[W]] = []
        for job in self._queue:
            if job.run_id in self._damaged:
                # The run lost a write already: a later one would leave a hole in its log. It is failed instead.
                self._lose(job, StoreUnavailable(self._damaged[job.run_id]))
            else:
                batch.append(job)
        self._queue = []
        if not batch:
            return
        self._in_flight = True
        if self.on_batch is not None:
            self.on_batch(len(batch))
        done = asyncio.ensure_future(self._dispatch(batch))
        done.add_done_callback(lambda finished: self._settle(batch, finished))

    def _settle(self, batch: list[Job[W]], finished: asyncio.Future[Outcome]) -> None:
        self._in_flight = False
        if finished.cancelled() or finished.exception() is not None:  # the executor went away under it
            closed = StoreClosed(f"the run store {self.location} is closed")
            outcome = Outcome([(False, closed)] * len(batch))
        else:
            outcome = finished.result()
        if outcome.unavailable is not None:
            self._degrade(outcome.unavailable)
        elif outcome.committed:
            self._recovered()
            self._wake_writers_of(batch)
        for job, (ok, value) in zip(batch, outcome.results, strict=True):
            if not ok and isinstance(value, StoreUnavailable):
                self._lose(job, value)
            elif job.future is None:
                if not ok:
                    log.error("run store: %s was not recorded: %s: %s", job.what, type(value).__name__, value)
            elif job.future.done():
                pass  # its caller was cancelled; the work was done all the same
            elif ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)
        # What was queued meanwhile is the next batch.
        self._flush()

    async def _writing(self, work: W, run_id: str | None = None, lost: Callable[[], None] | None = None) -> Any:
        return await self._enqueue(work, writes=True, wait=True, what="a write", run_id=run_id, lost=lost)

    async def _reading(self, work: W) -> Any:
        return await self._enqueue(work, writes=False, wait=True, what="a read")

    async def flush(self) -> None:
        """Return once everything queued before this call is committed (or has failed)."""
        with contextlib.suppress(StoreUnavailable):
            await self._reading(self._nothing())

    # -- when the store cannot be written ---------------------------------------------------------

    def _lose(self, job: Job[W], error: StoreUnavailable) -> None:
        """A job the store could not take: its run (if any) is damaged, its owner told, its caller answered."""
        if job.writes and self._degraded is not None:
            self._degraded.lost_writes += 1
        if job.writes and job.run_id is not None:
            self._damaged.setdefault(job.run_id, error.reason)
        if job.lost is not None:
            job.lost()
        if job.future is not None and not job.future.done():
            job.future.set_exception(error)

    def _degrade(self, reason: str) -> None:
        if self._degraded is None:
            self._degraded = _Degraded(reason)
            # One line for the whole outage, not one per lost write; the recovery line says what it cost.
            log.error(
                "run store %s cannot be used: %s; new runs are refused (503 store_unavailable) until it can be "
                "written again",
                self.location,
                reason,
            )

    def _recovered(self) -> None:
        if self._degraded is not None:
            was, self._degraded = self._degraded, None
            log.warning(
                "run store %s can be written again after %.1fs (%s); %d writes were lost",
                self.location,
                time.monotonic() - was.started,
                was.reason,
                was.lost_writes,
            )
        if self._damaged and not self._failing_damaged and not self._closed:
            self._fail_damaged()

    def _fail_damaged(self) -> None:
        """Record every run that lost a write as failed (`store_unavailable`), with the next seq of its log."""
        runs = dict(self._damaged)
        self._failing_damaged = True

        def done(future: asyncio.Future[list[str]]) -> None:
            self._failing_damaged = False
            if future.cancelled() or future.exception() is not None:
                return  # still unavailable: tried again after the next write that succeeds
            for run_id in runs:
                self._damaged.pop(run_id, None)
            if failed := future.result():
                log.warning(
                    "run store: %d runs that lost writes while it was unavailable are recorded as failed (%s): %s",
                    len(failed),
                    STORE_FAILED,
                    ", ".join(failed),
                )

        job = Job(self._fail_damaged_work(runs), True, None, "recording runs that lost writes as failed")
        future: asyncio.Future[list[str]] = self._push(job, wait=True)
        future.add_done_callback(done)

    @property
    def unavailable(self) -> bool:
        """A call failed because the store cannot be used, and no write has succeeded since: probe it."""
        return self._degraded is not None

    def health(self) -> StoreHealth:
        """Whether the store can be written, as far as it knows now (`/health`); never waits on the database."""
        degraded = self._degraded
        if degraded is None:
            return StoreHealth(status="ok")
        return StoreHealth(
            status="degraded", error=degraded.reason, since=degraded.since, lost_writes=degraded.lost_writes
        )

    # -- runs and events --------------------------------------------------------------------------

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
    ) -> RunRecord:
        """Record a new run and its `run.created` event (seq 1) in one transaction; this store owns it.

        Raises IdempotencyConflict when another run holds `idempotency_key` (its id is on the error),
        DuplicateRun when `run_id` exists.
        """
        if not is_valid_run_id(run_id):
            raise ValueError(f"{run_id!r} is not a run id (run_ + 24 hex digits)")
        check_state(state)
        work = self._create_work(run_id, mode, dumps(request), trace_id, idempotency_key, request_hash, state)
        record: RunRecord = await self._writing(work)
        return record

    async def append_event(self, run_id: str, type: str, payload: dict[str, Any]) -> int:
        """Append one event to a run's log; returns its seq. Raises UnknownRun, RunFinished."""
        seq: int = await self._writing(self._event_work(run_id, type, dumps(payload), None), run_id)
        return seq

    def record_event(
        self, run_id: str, seq: int, type: str, payload: dict[str, Any], *, lost: Callable[[], None] | None = None
    ) -> None:
        """Queue event `seq` of a run without waiting for it: for the run's owner, which numbers its events.

        The payload is encoded now, on the caller's side: the event is what it was when it was recorded.
        `lost` is called if the store could not take it (the run is then recorded as failed, see `health`).
        """
        work = self._event_work(run_id, type, dumps(payload), seq)
        self._enqueue(work, writes=True, wait=False, what=f"event {seq} of {run_id}", run_id=run_id, lost=lost)

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
    ) -> int:
        """Move a run to `state` and append its event (payload `state` + `payload`) in one transaction.

        `summary_update` is merged key by key into the run's summary; `seq` is the event's number when
        the caller owns the numbering (else the next free one). Returns the event's seq.
        A run that has ended (completed, failed, cancelled, expired) is refused with RunFinished; which
        other transitions make sense is the router's business.
        """
        check_state(state)
        payload_json = dumps({"state": state, **(payload or {})})
        work = self._transition_work(run_id, state, event_type, payload_json, summary_update, terminal_reason, seq)
        done: int = await self._writing(work, run_id, lost)
        return done

    def record_transition(
        self,
        run_id: str,
        seq: int,
        state: str,
        payload: dict[str, Any] | None = None,
        *,
        lost: Callable[[], None] | None = None,
    ) -> None:
        """`transition` queued without waiting, its event numbered `seq` by the run's owner."""
        check_state(state)
        payload_json = dumps({"state": state, **(payload or {})})
        work = self._transition_work(run_id, state, "run.state", payload_json, None, None, seq)
        what = f"state {state!r} (event {seq}) of {run_id}"
        self._enqueue(work, writes=True, wait=False, what=what, run_id=run_id, lost=lost)

    async def get_run(self, run_id: str) -> RunRecord | None:
        record: RunRecord | None = await self._reading(self._get_run_work(run_id))
        return record

    async def find_by_idempotency_key(self, key: str) -> RunRecord | None:
        record: RunRecord | None = await self._reading(self._find_by_key_work(key))
        return record

    async def list_runs(self, limit: int = 20, before: str | None = None) -> list[RunRecord]:
        """Runs newest first; `before` is a run id (the last one of the previous page): only older runs.

        An unknown `before` gives an empty page.
        """
        records: list[RunRecord] = await self._reading(self._list_runs_work(limit, before))
        return records

    async def events(self, run_id: str, after: int = 0, limit: int = 100) -> list[EventRecord]:
        """A page of a run's events with seq > `after`, in order."""
        page: list[EventRecord] = await self._reading(self._events_work(run_id, after, limit))
        return page

    async def event_cursors(self, run_ids: list[str]) -> dict[str, int]:
        """The seq of each run's latest event (the API's `event_cursor`), for the runs that have events."""
        if not run_ids:
            return {}
        cursors: dict[str, int] = await self._reading(self._cursors_work(run_ids))
        return cursors

    async def wait_for_events(self, run_id: str, after: int, wait_s: float) -> None:
        """Return once the run has an event past `after`, has ended (no more will come) or is unknown, or
        after `wait_s` seconds: a long poll. Events this store commits wake it at once; the backend
        wakes it for those other processes commit, where it can hear of them, else it looks every `poll_s`.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            # Watching before looking: a commit between the look and the wait still wakes it.
            woken = asyncio.Event()
            self._watchers.setdefault(run_id, set()).add(woken)
            try:
                if (await self.event_cursors([run_id])).get(run_id, 0) > after:
                    return
                record = await self.get_run(run_id)
                remaining = deadline - loop.time()
                if record is None or record.finished or remaining <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(woken.wait(), min(remaining, self.poll_s))
            finally:
                watching = self._watchers.get(run_id)
                if watching is not None:
                    watching.discard(woken)
                    if not watching:
                        del self._watchers[run_id]

    def _wake(self, run_ids: Iterable[str] | None) -> None:
        """Wake the waiters on these runs' events (None: on every run)."""
        for run_id in list(self._watchers) if run_ids is None else run_ids:
            for woken in self._watchers.get(run_id, ()):
                woken.set()

    def _wake_writers_of(self, batch: list[Job[W]]) -> None:
        if not self._watchers:
            return
        writes = [job for job in batch if job.writes]
        # A write that names no run (a new run, an expiry sweep) may have touched any: everyone looks again.
        self._wake(None if any(job.run_id is None for job in writes) else {str(job.run_id) for job in writes})

    # -- artifacts --------------------------------------------------------------------------------

    async def put_artifact(
        self, content: bytes | str, media_type: str = "text/plain", *, run_id: str | None = None
    ) -> str:
        """Store content once under its sha256 (returned); with `run_id`, also record that the run uses it.

        Storing the same content again changes nothing, not even its media type.
        """
        data = content.encode("utf-8") if isinstance(content, str) else content
        digest = hashlib.sha256(data).hexdigest()
        await self._writing(self._artifact_work(digest, data, media_type, run_id), run_id)
        return digest

    def record_artifact(
        self, content: bytes | str, media_type: str, run_id: str, *, lost: Callable[[], None] | None = None
    ) -> str:
        """`put_artifact` queued without waiting; returns the sha256 the content will be stored under."""
        data = content.encode("utf-8") if isinstance(content, str) else content
        digest = hashlib.sha256(data).hexdigest()
        what = f"artifact {digest[:12]} of {run_id}"
        work = self._artifact_work(digest, data, media_type, run_id)
        self._enqueue(work, writes=True, wait=False, what=what, run_id=run_id, lost=lost)
        return digest

    async def link_artifact(self, run_id: str, sha256: str) -> None:
        """Record that a run uses a stored artifact, so pruning keeps it while the run exists."""
        await self._writing(self._link_work(run_id, sha256))

    async def get_artifact(self, sha256: str) -> ArtifactRecord | None:
        artifact: ArtifactRecord | None = await self._reading(self._get_artifact_work(sha256))
        return artifact

    # -- leases -----------------------------------------------------------------------------------

    async def renew_lease(self, lease_s: float, holder: str) -> None:
        """Hold this store's lease for `lease_s` from now (taking it on the first call): its runs are live.

        `holder` names the process for people (host and pid). Renew well within `lease_s`.
        """
        await self._writing(self._renew_work(lease_s, holder))

    async def expire_lapsed(self, reason: str = "lease_expired") -> list[str]:
        """Expire the unfinished runs whose owner holds no live lease; returns their ids.

        A run of a router that stopped renewing (killed, hung, gone) is expired with `reason` and a
        `run.expired` event; runs of a live lease, and this store's own runs, are never touched. Lapsed
        leases are removed with them.
        """
        expired: list[str] = await self._writing(self._expire_lapsed_work(reason))
        return expired

    async def release_lease(self, reason: str = "router_stopped") -> list[str]:
        """Give the lease up: this store's unfinished runs are expired with `reason`; returns their ids."""
        released: list[str] = await self._writing(self._release_work(reason))
        return released

    # -- retention --------------------------------------------------------------------------------

    async def prune(
        self, older_than_days: float | None = None, *, keep_runs: int | None = None, limit: int | None = None
    ) -> int:
        """Delete finished runs past the retention, their events and the artifacts no run uses any more.

        A finished run goes when it was last updated more than `older_than_days` ago, or when it is not
        among the newest `keep_runs` finished runs. At most `limit` runs go per call (so a large prune
        does not hold the write lock for long: call again while it returns `limit`). Returns how many
        runs were removed. Unfinished runs are never touched, nor are artifacts that a remaining run
        uses; an artifact stored without a run goes once it is older than `older_than_days`.
        """
        if older_than_days is None and keep_runs is None:
            return 0
        removed: int = await self._writing(self._prune_work(older_than_days, keep_runs, limit))
        return removed

    # -- lifecycle --------------------------------------------------------------------------------

    async def close(self) -> None:
        """Finish the work already handed to the store, then close the connection. Closing twice is fine."""
        if self._closed:
            return
        self._closed = True
        # A last job queued behind everything else: once it is done, so is all the work handed to the store.
        with contextlib.suppress(StoreUnavailable):
            await self._push(Job(self._nothing(), False, None, "closing"), wait=True)
        await self._shutdown()
