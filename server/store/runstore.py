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
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from server.store.errors import DuplicateRun, IdempotencyConflict, StoreClosed, UnknownArtifact, UnknownRun
from server.store.records import (
    RUN_STATES,
    TERMINAL_STATES,
    ArtifactRecord,
    EventRecord,
    RunRecord,
    RunState,
    is_valid_run_id,
)
from server.store.schema import connect, now

__all__ = ["RunStore"]

T = TypeVar("T")

log = logging.getLogger("fusionkit.store")

_TERMINAL = tuple(sorted(TERMINAL_STATES))
_IN_TERMINAL = f"state IN ({', '.join('?' * len(_TERMINAL))})"


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
    )


def _event_record(row: sqlite3.Row) -> EventRecord:
    return EventRecord(
        run_id=row["run_id"], seq=row["seq"], ts=row["ts"], type=row["type"], payload=json.loads(row["payload_json"])
    )


def _check_state(state: str) -> None:
    if state not in RUN_STATES:
        raise ValueError(f"unknown run state {state!r}; expected one of {sorted(RUN_STATES)}")


@dataclass(slots=True)
class _Job:
    """One call's work for the store's thread, and who waits for it (nobody: a failure is logged)."""

    work: Callable[[sqlite3.Connection], Any]
    writes: bool
    future: asyncio.Future[Any] | None
    what: str


class RunStore:
    """Runs, their append-only events, idempotency keys and artifacts, in one SQLite file.

    Open it once per process (`RunStore(path)` opens and migrates the file at once, so a bad path
    fails at start), call the async methods from the event loop, and `await close()` at the end;
    `async with RunStore(path) as store:` does both.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusionkit-store")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        self._queue: list[_Job] = []
        self._flush_scheduled = False
        self._in_flight = False
        try:
            self._executor.submit(self._open).result()
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

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreClosed(f"the run store {self.path} is closed")
        return self._conn

    def _run_batch(self, batch: list[_Job]) -> list[tuple[bool, Any]]:
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
                        conn.execute("ROLLBACK TO job")
                    outcomes.append((False, exc))
                if job.writes:
                    conn.execute("RELEASE job")
            if writes:
                conn.execute("COMMIT")
        except BaseException as exc:
            if conn is not None and conn.in_transaction:
                conn.execute("ROLLBACK")
            # Nothing of the batch was kept: every job failed, the ones that had succeeded too.
            return [(False, exc)] * len(batch)
        return outcomes

    # -- the event loop's side of the queue -----------------------------------------------------

    def _enqueue(self, work: Callable[[sqlite3.Connection], Any], *, writes: bool, wait: bool, what: str) -> Any:
        if self._closed:
            raise StoreClosed(f"the run store {self.path} is closed")
        return self._push(work, writes=writes, wait=wait, what=what)

    def _push(self, work: Callable[[sqlite3.Connection], Any], *, writes: bool, wait: bool, what: str) -> Any:
        loop = asyncio.get_running_loop()
        future = loop.create_future() if wait else None
        self._queue.append(_Job(work, writes, future, what))
        if not self._flush_scheduled and not self._in_flight:
            # Not at once: every job queued in this turn of the event loop joins the same batch.
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._in_flight or not self._queue:
            return
        batch, self._queue = self._queue, []
        self._in_flight = True
        done = asyncio.get_running_loop().run_in_executor(self._executor, self._run_batch, batch)
        done.add_done_callback(lambda finished: self._settle(batch, finished))

    def _settle(self, batch: list[_Job], finished: asyncio.Future[list[tuple[bool, Any]]]) -> None:
        self._in_flight = False
        if finished.cancelled() or finished.exception() is not None:  # the executor went away under it
            closed = StoreClosed(f"the run store {self.path} is closed")
            outcomes: list[tuple[bool, Any]] = [(False, closed)] * len(batch)
        else:
            outcomes = finished.result()
        for job, (ok, value) in zip(batch, outcomes, strict=True):
            if job.future is None:
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

    async def _writing(self, work: Callable[[sqlite3.Connection], T]) -> T:
        result: T = await self._enqueue(work, writes=True, wait=True, what="a write")
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
        """Record a new run and its `run.created` event (seq 1) in one transaction.

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
                "request_hash, request_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, stamp, stamp, state, mode, trace_id, idempotency_key, request_hash, _dumps(request)),
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
            self._require_run(conn, run_id)
            return self._append(conn, run_id, type, payload_json, seq)

        return work

    async def append_event(self, run_id: str, type: str, payload: dict[str, Any]) -> int:
        """Append one event to a run's log; returns its seq. Raises UnknownRun."""
        return await self._writing(self._event_work(run_id, type, payload, None))

    def record_event(self, run_id: str, seq: int, type: str, payload: dict[str, Any]) -> None:
        """Queue event `seq` of a run without waiting for it: for the run's owner, which numbers its events."""
        self._enqueue(
            self._event_work(run_id, type, payload, seq), writes=True, wait=False, what=f"event {seq} of {run_id}"
        )

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
            row = self._require_run(conn, run_id, "summary_json")
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
    ) -> int:
        """Move a run to `state` and append its event (payload `state` + `payload`) in one transaction.

        `summary_update` is merged key by key into the run's summary; `seq` is the event's number when
        the caller owns the numbering (else the next free one). Returns the event's seq.
        The store records what it is told: which transitions make sense is the router's business.
        """
        work = self._transition_work(run_id, state, event_type, payload, summary_update, terminal_reason, seq)
        return await self._writing(work)

    def record_transition(self, run_id: str, seq: int, state: str, payload: dict[str, Any] | None = None) -> None:
        """`transition` queued without waiting, its event numbered `seq` by the run's owner."""
        work = self._transition_work(run_id, state, "run.state", payload, None, None, seq)
        self._enqueue(work, writes=True, wait=False, what=f"state {state!r} (event {seq}) of {run_id}")

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
        return await self._writing(work)

    def record_artifact(self, content: bytes | str, media_type: str, run_id: str) -> str:
        """`put_artifact` queued without waiting; returns the sha256 the content will be stored under."""
        digest, work = self._artifact_work(content, media_type, run_id)
        self._enqueue(work, writes=True, wait=False, what=f"artifact {digest[:12]} of {run_id}")
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

    # -- lifecycle ------------------------------------------------------------------------------

    async def expire_unfinished(self, reason: str = "router_restarted") -> int:
        """Mark every unfinished run `expired` with `reason` and a `run.expired` event; returns how many.

        The router calls this at start: runs a previous router left unfinished can never finish.
        """

        def work(conn: sqlite3.Connection) -> int:
            ids = [r[0] for r in conn.execute(f"SELECT run_id FROM runs WHERE NOT {_IN_TERMINAL}", _TERMINAL)]
            for run_id in ids:
                conn.execute(
                    "UPDATE runs SET state = 'expired', updated_at = ?, terminal_reason = ? WHERE run_id = ?",
                    (now(), reason, run_id),
                )
                self._append(conn, run_id, "run.expired", _dumps({"state": "expired", "reason": reason}))
            return len(ids)

        return await self._writing(work)

    async def prune(self, older_than_days: float) -> int:
        """Delete finished runs last updated before the cutoff, their events and the artifacts no run uses.

        Returns how many runs were removed. Unfinished runs are never touched, nor are artifacts that a
        remaining run uses; an artifact stored without a run goes once it is older than the cutoff.
        """
        cutoff = (datetime.now(UTC) - timedelta(days=older_than_days)).isoformat(timespec="milliseconds")

        def work(conn: sqlite3.Connection) -> int:
            conn.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (run_id TEXT PRIMARY KEY)")
            conn.execute("DELETE FROM doomed")
            conn.execute(
                f"INSERT INTO doomed SELECT run_id FROM runs WHERE updated_at < ? AND {_IN_TERMINAL}",
                (cutoff, *_TERMINAL),
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
                (cutoff,),
            )
            return int(count)

        return await self._writing(work)

    async def close(self) -> None:
        """Finish the work already handed to the store, then close the connection. Closing twice is fine."""
        if self._closed:
            return
        self._closed = True
        # A last job queued behind everything else: once it is done, so is all the work handed to the store.
        await self._push(lambda conn: None, writes=False, wait=True, what="closing")

        def shutdown() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shutdown)
        self._executor.shutdown(wait=True)
