"""RunStore: the durable record of every run (SPEC §7), over SQLite, for an asyncio server.

    store = RunStore(".fusionkit/runs.sqlite3")
    run = await store.create_run(new_run_id(), mode="panel", request=body, trace_id=trace)
    seq = await store.append_event(run.run_id, "model_call.started", {...})
    store.record_event(run.run_id, 3, "model_call.completed", {...})      # queued, not awaited
    await store.transition(run.run_id, "completed", summary_update={...}, terminal_reason="completed")

One dedicated thread owns the connection and does all database work, so the event loop never
waits on SQLite and writes never contend inside the process. Work reaches that thread through
one first-in first-out queue: whatever is queued while the thread is busy goes over as one
batch and is written in one transaction, each call in its own savepoint, so a call that fails
undoes only itself. That is group commit: a fused request makes some 25 writes, and handing
each to the thread on its own cost more CPU than SQLite's work (docs/benchmarks.md).

Every awaited method returns once its work is committed; reads queue behind the writes before
them, so a read sees every write made before it. The `record_*` methods queue without waiting:
the run's owner (server.runs.RunRecorder) gives each event its sequence number, and a failure
is logged, not raised. A caller cancelled while awaiting does not undo work already queued.

A finished run is final: its state and its event log do not change (RunFinished). Each store
is one owner (`owner_id`): the runs it creates are its own, and with a lease (`renew_lease`)
no other router expires them (`expire_lapsed`; server.store.upkeep keeps the lease).

When the store cannot be written (a full disk, a read-only or deleted file, a lock held too
long) every call fails with StoreUnavailable and `health()` says degraded; a run that loses a
write is recorded as failed once the store can be written again, never left with a hole in its
log. The connection is reopened when its file was deleted or replaced, or could not be opened.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from server.store.errors import (
    DuplicateRun,
    IdempotencyConflict,
    RunFinished,
    StoreClosed,
    StoreUnavailable,
    UnknownArtifact,
    UnknownRun,
    unavailable_cause,
)
from server.store.records import (
    RUN_STATES,
    TERMINAL_STATES,
    ArtifactRecord,
    EventRecord,
    RunRecord,
    RunState,
    StoreHealth,
    is_valid_run_id,
)
from server.store.schema import connect, now

__all__ = ["RunStore"]

T = TypeVar("T")

log = logging.getLogger("fusionkit.store")

_TERMINAL = tuple(sorted(TERMINAL_STATES))
_IN_TERMINAL = f"state IN ({', '.join('?' * len(_TERMINAL))})"

REOPEN_EVERY_S = 1.0  # a store that could not be opened is tried again at most this often
FILE_GONE = "the store file was deleted or replaced while the router was using it"
STORE_FAILED = "store_unavailable"  # the terminal reason of a run that lost writes while the store was unavailable


def _dumps(value: Any) -> str:
    # Anything JSON cannot encode is recorded as its text, not refused; ASCII escapes keep a client's lone
    # surrogate (valid JSON, invalid UTF-8) from failing the transaction.
    return json.dumps(value, default=str)


def _run_record(row: sqlite3.Row) -> RunRecord:
    return RunRecord(
        run_id=row["run_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
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


def _event_record(row: sqlite3.Row) -> EventRecord:
    return EventRecord(
        run_id=row["run_id"], seq=row["seq"], ts=row["ts"], type=row["type"], payload=json.loads(row["payload_json"])
    )


def _check_state(state: str) -> None:
    if state not in RUN_STATES:
        raise ValueError(f"unknown run state {state!r}; expected one of {sorted(RUN_STATES)}")


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file `path` leads to now (device, inode), or None: a deleted or replaced store file shows here."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _store_failure(reason: str) -> dict[str, Any]:
    return {
        "message": f"the run store could not record this run ({reason}); its record is incomplete",
        "type": "server_error",
        "code": STORE_FAILED,
    }


@dataclass(slots=True)
class _Job:
    """One call's work for the store's thread, and who waits for it (nobody: a failure is logged)."""

    work: Callable[[sqlite3.Connection], Any]
    writes: bool
    future: asyncio.Future[Any] | None
    what: str
    run_id: str | None = None  # the existing run it writes to: one that loses a write is failed, not left with a hole
    lost: Callable[[], None] | None = None  # told when the write is dropped because the store could not take it


@dataclass(slots=True)
class _Outcome:
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


class RunStore:
    """Runs, their append-only events, idempotency keys and artifacts, in one SQLite file.

    Open it once per process (`RunStore(path)` opens and migrates the file at once, so a bad path
    fails at start), call the async methods from the event loop, and `await close()` at the end;
    `async with RunStore(path) as store:` does both. An existing store file that cannot be written
    right now (read-only, a full disk) does not fail the start: the store begins degraded and
    tries again as it is used.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.owner_id = f"owner_{secrets.token_hex(8)}"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusionkit-store")
        self._conn: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None  # the file the connection has open
        self._file_gone_told: tuple[int, int] | None = None  # that file's loss was logged already
        self._next_open = 0.0
        self._shut = False  # the connection is closed for good
        self._closed = False  # no new work is taken
        self._queue: list[_Job] = []
        # Told the size of each batch handed to the store's thread (the router's metrics).
        self.on_batch: Callable[[int], None] | None = None
        self._flush_scheduled = False
        self._in_flight = False
        self._degraded: _Degraded | None = None
        self._damaged: dict[str, str] = {}  # runs that lost a write, not yet recorded as failed: why
        self._failing_damaged = False
        existed = self.path.is_file()
        try:
            self._executor.submit(self._open).result()
        except Exception as exc:
            reason = unavailable_cause(exc)
            if reason is None or not existed:
                self._executor.shutdown(wait=False)
                raise
            self._next_open = time.monotonic() + REOPEN_EVERY_S
            self._degrade(reason)
        except BaseException:
            self._executor.shutdown(wait=False)
            raise

    async def __aenter__(self) -> RunStore:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- the store's thread ---------------------------------------------------------------------

    def _open(self) -> None:
        # Created on the store's thread, used only there: sqlite3's same-thread check stays on.
        self._conn = connect(self.path)
        self._file = _identity(self.path)

    def _connection(self) -> sqlite3.Connection:
        """The open connection; opened again when its file went away or it could not be opened before."""
        if self._shut:
            raise StoreClosed(f"the run store {self.path} is closed")
        if self._conn is not None and _identity(self.path) != self._file:
            # Writing on would go into a file nobody will ever read: start a new one where the old one was.
            self._tell_file_gone(self._file)
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
            self._next_open = 0.0
        if self._conn is None:
            if time.monotonic() < self._next_open:
                raise StoreUnavailable(self._degraded.reason if self._degraded else "it could not be opened")
            try:
                self._open()
            except Exception as exc:
                self._next_open = time.monotonic() + REOPEN_EVERY_S
                raise StoreUnavailable(unavailable_cause(exc) or f"{type(exc).__name__}: {exc}") from exc
            assert self._conn is not None
        return self._conn

    def _tell_file_gone(self, lost: tuple[int, int] | None) -> None:
        if lost is not None and self._file_gone_told != lost:
            self._file_gone_told = lost
            log.error(
                "run store %s: %s; the runs recorded in it are gone unless the file is restored, and new runs "
                "are recorded in a new file at that path",
                self.path,
                FILE_GONE,
            )

    def _run_batch(self, batch: list[_Job]) -> _Outcome:
        """Run a batch in order, its writes in one transaction; each job's (ok, result or exception).

        Never raises: whatever fails, every job gets an outcome, so no caller waits forever.
        """
        conn: sqlite3.Connection | None = None
        writes = any(job.writes for job in batch)
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn = self._connection()
            if writes:
                # IMMEDIATE takes the write lock up front: another process cannot slip in between a read of
                # max(seq) and the insert, and a busy database waits (busy_timeout) instead of failing mid-way.
                conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                if job.writes:
                    conn.execute("SAVEPOINT job")
                try:
                    outcomes.append((True, job.work(conn)))
                except Exception as exc:
                    if job.writes:
                        if not conn.in_transaction:
                            raise  # SQLite rolled the whole transaction back (a full disk, an I/O error)
                        conn.execute("ROLLBACK TO job")
                    if unavailable_cause(exc) is not None:
                        raise  # the store itself failed, not this call: the rest of the batch fails with it
                    outcomes.append((False, exc))
                if job.writes:
                    conn.execute("RELEASE job")
            if writes:
                conn.execute("COMMIT")
        except BaseException as exc:
            if conn is not None and conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            # Nothing of the batch was kept: every job failed, the ones that had succeeded too.
            reason = unavailable_cause(exc)
            if reason is None:
                return _Outcome([(False, exc)] * len(batch))
            if isinstance(exc, StoreUnavailable):
                failure = exc
            else:
                failure = StoreUnavailable(reason)
                failure.__cause__ = exc
            return _Outcome([(False, failure)] * len(batch), unavailable=reason)
        return _Outcome(outcomes, committed=writes)

    # -- the event loop's side of the queue -----------------------------------------------------

    def _enqueue(
        self,
        work: Callable[[sqlite3.Connection], Any],
        *,
        writes: bool,
        wait: bool,
        what: str,
        run_id: str | None = None,
        lost: Callable[[], None] | None = None,
    ) -> Any:
        if self._closed:
            raise StoreClosed(f"the run store {self.path} is closed")
        return self._push(_Job(work, writes, None, what, run_id, lost), wait=wait)

    def _push(self, job: _Job, *, wait: bool) -> Any:
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
        batch: list[_Job] = []
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
        done = asyncio.get_running_loop().run_in_executor(self._executor, self._run_batch, batch)
        done.add_done_callback(lambda finished: self._settle(batch, finished))

    def _settle(self, batch: list[_Job], finished: asyncio.Future[_Outcome]) -> None:
        self._in_flight = False
        if finished.cancelled() or finished.exception() is not None:  # the executor went away under it
            closed = StoreClosed(f"the run store {self.path} is closed")
            outcome = _Outcome([(False, closed)] * len(batch))
        else:
            outcome = finished.result()
        if outcome.unavailable is not None:
            self._degrade(outcome.unavailable)
        elif outcome.committed:
            self._recovered()
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

    # -- when the store cannot be written ---------------------------------------------------------

    def _lose(self, job: _Job, error: StoreUnavailable) -> None:
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
                self.path,
                reason,
            )

    def _recovered(self) -> None:
        if self._degraded is not None:
            was, self._degraded = self._degraded, None
            log.warning(
                "run store %s can be written again after %.1fs (%s); %d writes were lost",
                self.path,
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

        def work(conn: sqlite3.Connection) -> list[str]:
            failed = []
            for run_id, reason in runs.items():
                row = conn.execute("SELECT state, summary_json FROM runs WHERE run_id = ?", (run_id,)).fetchone()
                if row is not None and row["state"] not in TERMINAL_STATES:
                    error = _store_failure(reason)
                    summary = {**json.loads(row["summary_json"]), "error": error}
                    conn.execute(
                        "UPDATE runs SET state = 'failed', updated_at = ?, summary_json = ?, terminal_reason = ? "
                        "WHERE run_id = ?",
                        (now(), _dumps(summary), STORE_FAILED, run_id),
                    )
                    self._append(conn, run_id, "run.state", _dumps({"state": "failed", "error": error}))
                    failed.append(run_id)
                # else nothing is left to fail: the run is gone (a deleted store file), or ended by then
            return failed

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

        job = _Job(work, True, None, "recording runs that lost writes as failed")
        future: asyncio.Future[list[str]] = self._push(job, wait=True)
        future.add_done_callback(done)

    @property
    def unavailable(self) -> bool:
        """A call failed because the store cannot be used, and no write has succeeded since: probe it."""
        return self._degraded is not None

    @property
    def queue_depth(self) -> int:
        """Calls waiting for the store's thread (the batch it is writing now not counted)."""
        return len(self._queue)

    def health(self) -> StoreHealth:
        """Whether the store can be written, as far as it knows now (`/health`); never waits on the database."""
        degraded = self._degraded
        if not self._shut and self._conn is not None and _identity(self.path) != self._file:
            self._tell_file_gone(self._file)
            return StoreHealth(status="degraded", error=FILE_GONE, since=degraded.since if degraded else None)
        if degraded is None:
            return StoreHealth(status="ok")
        return StoreHealth(
            status="degraded", error=degraded.reason, since=degraded.since, lost_writes=degraded.lost_writes
        )

    async def _writing(
        self,
        work: Callable[[sqlite3.Connection], T],
        run_id: str | None = None,
        lost: Callable[[], None] | None = None,
    ) -> T:
        result: T = await self._enqueue(work, writes=True, wait=True, what="a write", run_id=run_id, lost=lost)
        return result

    async def _reading(self, work: Callable[[sqlite3.Connection], T]) -> T:
        result: T = await self._enqueue(work, writes=False, wait=True, what="a read")
        return result

    # -- helpers that run inside a transaction --------------------------------------------------

    @staticmethod
    def _require_run(conn: sqlite3.Connection, run_id: str, columns: str = "run_id") -> sqlite3.Row:
        """The run's row, only `columns` of it: most callers just check that it exists, on every event,
        and the whole row carries the request and summary JSON."""
        row = conn.execute(f"SELECT {columns} FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise UnknownRun(run_id)
        return row

    @classmethod
    def _require_open_run(cls, conn: sqlite3.Connection, run_id: str, columns: str = "state") -> sqlite3.Row:
        """The row of a run that has not ended: a finished run's state and events are final."""
        row = cls._require_run(conn, run_id, f"state, {columns}" if columns != "state" else columns)
        if row["state"] in TERMINAL_STATES:
            raise RunFinished(run_id, row["state"])
        return row

    @staticmethod
    def _append(conn: sqlite3.Connection, run_id: str, type: str, payload_json: str, seq: int | None = None) -> int:
        if seq is None:
            (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run_id = ?", (run_id,)).fetchone()
        conn.execute(
            "INSERT INTO events (run_id, seq, ts, type, payload_json) VALUES (?, ?, ?, ?, ?)",
            (run_id, seq, now(), type, payload_json),
        )
        return int(seq)

    # -- runs and events ------------------------------------------------------------------------

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
        _check_state(state)

        def work(conn: sqlite3.Connection) -> RunRecord:
            if idempotency_key is not None:
                holder = conn.execute(
                    "SELECT run_id FROM runs WHERE idempotency_key = ?", (idempotency_key,)
                ).fetchone()
                if holder is not None:
                    raise IdempotencyConflict(idempotency_key, holder["run_id"])
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is not None:
                raise DuplicateRun(run_id)
            stamp = now()
            conn.execute(
                "INSERT INTO runs (run_id, created_at, updated_at, state, mode, trace_id, idempotency_key, "
                "request_hash, request_json, owner_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    stamp,
                    stamp,
                    state,
                    mode,
                    trace_id,
                    idempotency_key,
                    request_hash,
                    _dumps(request),
                    self.owner_id,
                ),
            )
            self._append(conn, run_id, "run.created", _dumps({"state": state, "mode": mode}))
            return _run_record(self._require_run(conn, run_id, "*"))

        return await self._writing(work)

    def _event_work(
        self, run_id: str, type: str, payload: dict[str, Any], seq: int | None
    ) -> Callable[[sqlite3.Connection], int]:
        # Encoded now, on the caller's side: the event is what the payload was when it was recorded.
        payload_json = _dumps(payload)

        def work(conn: sqlite3.Connection) -> int:
            self._require_open_run(conn, run_id)
            return self._append(conn, run_id, type, payload_json, seq)

        return work

    async def append_event(self, run_id: str, type: str, payload: dict[str, Any]) -> int:
        """Append one event to a run's log; returns its seq. Raises UnknownRun, RunFinished."""
        return await self._writing(self._event_work(run_id, type, payload, None), run_id)

    def record_event(
        self, run_id: str, seq: int, type: str, payload: dict[str, Any], *, lost: Callable[[], None] | None = None
    ) -> None:
        """Queue event `seq` of a run without waiting for it: for the run's owner, which numbers its events.

        `lost` is called if the store could not take it (the run is then recorded as failed, see `health`).
        """
        work = self._event_work(run_id, type, payload, seq)
        self._enqueue(work, writes=True, wait=False, what=f"event {seq} of {run_id}", run_id=run_id, lost=lost)

    def _transition_work(
        self,
        run_id: str,
        state: str,
        event_type: str,
        payload: dict[str, Any] | None,
        summary_update: dict[str, Any] | None,
        terminal_reason: str | None,
        seq: int | None,
    ) -> Callable[[sqlite3.Connection], int]:
        _check_state(state)
        payload_json = _dumps({"state": state, **(payload or {})})

        def work(conn: sqlite3.Connection) -> int:
            row = self._require_open_run(conn, run_id, "summary_json")
            summary = {**json.loads(row["summary_json"]), **(summary_update or {})}
            conn.execute(
                "UPDATE runs SET state = ?, updated_at = ?, summary_json = ?, "
                "terminal_reason = COALESCE(?, terminal_reason) WHERE run_id = ?",
                (state, now(), _dumps(summary), terminal_reason, run_id),
            )
            return self._append(conn, run_id, event_type, payload_json, seq)

        return work

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
        work = self._transition_work(run_id, state, event_type, payload, summary_update, terminal_reason, seq)
        return await self._writing(work, run_id, lost)

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
        work = self._transition_work(run_id, state, "run.state", payload, None, None, seq)
        what = f"state {state!r} (event {seq}) of {run_id}"
        self._enqueue(work, writes=True, wait=False, what=what, run_id=run_id, lost=lost)

    async def get_run(self, run_id: str) -> RunRecord | None:
        def work(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            return _run_record(row) if row is not None else None

        return await self._reading(work)

    async def find_by_idempotency_key(self, key: str) -> RunRecord | None:
        def work(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute("SELECT * FROM runs WHERE idempotency_key = ?", (key,)).fetchone()
            return _run_record(row) if row is not None else None

        return await self._reading(work)

    async def list_runs(self, limit: int = 20, before: str | None = None) -> list[RunRecord]:
        """Runs newest first; `before` is a run id (the last one of the previous page): only older runs.

        An unknown `before` gives an empty page.
        """

        def work(conn: sqlite3.Connection) -> list[RunRecord]:
            if before is None:
                rows = conn.execute(
                    "SELECT * FROM runs ORDER BY created_at DESC, rowid DESC LIMIT ?", (limit,)
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM runs WHERE (created_at, rowid) < "
                    "(SELECT created_at, rowid FROM runs WHERE run_id = ?) "
                    "ORDER BY created_at DESC, rowid DESC LIMIT ?",
                    (before, limit),
                ).fetchall()
            return [_run_record(r) for r in rows]

        return await self._reading(work)

    async def events(self, run_id: str, after: int = 0, limit: int = 100) -> list[EventRecord]:
        """A page of a run's events with seq > `after`, in order."""

        def work(conn: sqlite3.Connection) -> list[EventRecord]:
            rows = conn.execute(
                "SELECT * FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?", (run_id, after, limit)
            ).fetchall()
            return [_event_record(r) for r in rows]

        return await self._reading(work)

    async def event_cursors(self, run_ids: list[str]) -> dict[str, int]:
        """The seq of each run's latest event (the API's `event_cursor`), for the runs that have events."""

        def work(conn: sqlite3.Connection) -> dict[str, int]:
            marks = ", ".join("?" * len(run_ids))
            rows = conn.execute(
                f"SELECT run_id, MAX(seq) FROM events WHERE run_id IN ({marks}) GROUP BY run_id", run_ids
            ).fetchall()
            return {row[0]: int(row[1]) for row in rows}

        return await self._reading(work) if run_ids else {}

    # -- artifacts ------------------------------------------------------------------------------

    def _artifact_work(
        self, content: bytes | str, media_type: str, run_id: str | None
    ) -> tuple[str, Callable[[sqlite3.Connection], str]]:
        data = content.encode("utf-8") if isinstance(content, str) else content
        digest = hashlib.sha256(data).hexdigest()

        def work(conn: sqlite3.Connection) -> str:
            if run_id is not None:
                self._require_run(conn, run_id)
            conn.execute(
                "INSERT OR IGNORE INTO artifacts (sha256, media_type, size, content, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (digest, media_type, len(data), data, now()),
            )
            if run_id is not None:
                conn.execute("INSERT OR IGNORE INTO run_artifacts (run_id, sha256) VALUES (?, ?)", (run_id, digest))
            return digest

        return digest, work

    async def put_artifact(
        self, content: bytes | str, media_type: str = "text/plain", *, run_id: str | None = None
    ) -> str:
        """Store content once under its sha256 (returned); with `run_id`, also record that the run uses it.

        Storing the same content again changes nothing, not even its media type.
        """
        _, work = self._artifact_work(content, media_type, run_id)
        return await self._writing(work, run_id)

    def record_artifact(
        self, content: bytes | str, media_type: str, run_id: str, *, lost: Callable[[], None] | None = None
    ) -> str:
        """`put_artifact` queued without waiting; returns the sha256 the content will be stored under."""
        digest, work = self._artifact_work(content, media_type, run_id)
        what = f"artifact {digest[:12]} of {run_id}"
        self._enqueue(work, writes=True, wait=False, what=what, run_id=run_id, lost=lost)
        return digest

    async def link_artifact(self, run_id: str, sha256: str) -> None:
        """Record that a run uses a stored artifact, so pruning keeps it while the run exists."""

        def work(conn: sqlite3.Connection) -> None:
            self._require_run(conn, run_id)
            if conn.execute("SELECT 1 FROM artifacts WHERE sha256 = ?", (sha256,)).fetchone() is None:
                raise UnknownArtifact(sha256)
            conn.execute("INSERT OR IGNORE INTO run_artifacts (run_id, sha256) VALUES (?, ?)", (run_id, sha256))

        await self._writing(work)

    async def get_artifact(self, sha256: str) -> ArtifactRecord | None:
        def work(conn: sqlite3.Connection) -> ArtifactRecord | None:
            row = conn.execute("SELECT * FROM artifacts WHERE sha256 = ?", (sha256,)).fetchone()
            return ArtifactRecord(**dict(row)) if row is not None else None

        return await self._reading(work)

    # -- leases -----------------------------------------------------------------------------------

    async def renew_lease(self, lease_s: float, holder: str) -> None:
        """Hold this store's lease for `lease_s` from now (taking it on the first call): its runs are live.

        `holder` names the process for people (host and pid). Renew well within `lease_s`.
        """

        def work(conn: sqlite3.Connection) -> None:
            stamp = now()
            conn.execute(
                "INSERT INTO leases (owner_id, holder, acquired_at, renewed_at, expires_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (owner_id) DO UPDATE SET renewed_at = excluded.renewed_at, "
                "expires_at = excluded.expires_at",
                (self.owner_id, holder, stamp, stamp, now(lease_s)),
            )

        await self._writing(work)

    def _expire(self, conn: sqlite3.Connection, run_ids: list[str], reason: str) -> None:
        payload = _dumps({"state": "expired", "reason": reason})
        for run_id in run_ids:
            conn.execute(
                "UPDATE runs SET state = 'expired', updated_at = ?, terminal_reason = ? WHERE run_id = ?",
                (now(), reason, run_id),
            )
            self._append(conn, run_id, "run.expired", payload)

    async def expire_lapsed(self, reason: str = "lease_expired") -> list[str]:
        """Expire the unfinished runs whose owner holds no live lease; returns their ids.

        A run of a router that stopped renewing (killed, hung, gone) is expired with `reason` and a
        `run.expired` event; runs of a live lease, and this store's own runs, are never touched. Lapsed
        leases are removed with them.
        """

        def work(conn: sqlite3.Connection) -> list[str]:
            stamp = now()
            lapsed = [
                row[0]
                for row in conn.execute(
                    f"SELECT run_id FROM runs WHERE NOT {_IN_TERMINAL} AND owner_id IS NOT ? AND NOT EXISTS "
                    "(SELECT 1 FROM leases WHERE leases.owner_id = runs.owner_id AND leases.expires_at > ?)",
                    (*_TERMINAL, self.owner_id, stamp),
                )
            ]
            self._expire(conn, lapsed, reason)
            conn.execute("DELETE FROM leases WHERE expires_at <= ? AND owner_id != ?", (stamp, self.owner_id))
            return lapsed

        return await self._writing(work)

    async def release_lease(self, reason: str = "router_stopped") -> list[str]:
        """Give the lease up: this store's unfinished runs are expired with `reason`; returns their ids."""

        def work(conn: sqlite3.Connection) -> list[str]:
            mine = [
                row[0]
                for row in conn.execute(
                    f"SELECT run_id FROM runs WHERE owner_id = ? AND NOT {_IN_TERMINAL}", (self.owner_id, *_TERMINAL)
                )
            ]
            self._expire(conn, mine, reason)
            conn.execute("DELETE FROM leases WHERE owner_id = ?", (self.owner_id,))
            return mine

        return await self._writing(work)

    # -- retention ------------------------------------------------------------------------------

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
        cutoff = now(-older_than_days * 86400) if older_than_days is not None else None
        conditions: list[str] = []
        params: list[str | int] = []
        if cutoff is not None:
            conditions.append("updated_at < ?")
            params.append(cutoff)
        if keep_runs is not None:
            conditions.append(
                f"run_id IN (SELECT run_id FROM runs WHERE {_IN_TERMINAL} "
                "ORDER BY created_at DESC, rowid DESC LIMIT -1 OFFSET ?)"
            )
            params += [*_TERMINAL, keep_runs]
        if not conditions:
            return 0

        def work(conn: sqlite3.Connection) -> int:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (run_id TEXT PRIMARY KEY)")
            conn.execute("DELETE FROM doomed")
            conn.execute(
                f"INSERT INTO doomed SELECT run_id FROM runs WHERE {_IN_TERMINAL} AND ({' OR '.join(conditions)}) "
                "LIMIT ?",
                (*_TERMINAL, *params, -1 if limit is None else limit),
            )
            (count,) = conn.execute("SELECT COUNT(*) FROM doomed").fetchone()
            # Artifacts the doomed runs used go with them unless another run uses them too.
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS orphaned (sha256 TEXT PRIMARY KEY)")
            conn.execute("DELETE FROM orphaned")
            conn.execute(
                "INSERT OR IGNORE INTO orphaned SELECT sha256 FROM run_artifacts "
                "WHERE run_id IN (SELECT run_id FROM doomed)"
            )
            for table in ("events", "run_artifacts", "runs"):
                conn.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT run_id FROM doomed)")
            conn.execute(
                "DELETE FROM artifacts WHERE (sha256 IN (SELECT sha256 FROM orphaned) OR created_at < ?) "
                "AND sha256 NOT IN (SELECT sha256 FROM run_artifacts)",
                (cutoff or "",),
            )
            return int(count)

        return await self._writing(work)

    # -- lifecycle ------------------------------------------------------------------------------

    async def close(self) -> None:
        """Finish the work already handed to the store, then close the connection. Closing twice is fine."""
        if self._closed:
            return
        self._closed = True
        # A last job queued behind everything else: once it is done, so is all the work handed to the store.
        with contextlib.suppress(StoreUnavailable):
            await self._push(_Job(lambda conn: None, False, None, "closing"), wait=True)

        def shutdown() -> None:
            self._shut = True
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shutdown)
        self._executor.shutdown(wait=True)
