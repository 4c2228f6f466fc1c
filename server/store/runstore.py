"""RunStore: the durable record of every run, over SQLite, for an asyncio server.

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
each to the thread on its own cost more CPU than SQLite's work (docs/benchmarks.md). The queue,
the public methods and what happens when the store cannot be written are shared with the
PostgreSQL store (server.store.batching); this module holds what SQLite does for each call.

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
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from server.store.batching import (
    STORE_FAILED,
    BatchingStore,
    Job,
    Outcome,
    dumps,
    event_record,
    run_record,
    store_failure,
)
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
    TERMINAL_STATES,
    ArtifactRecord,
    EventRecord,
    RunRecord,
    StoreHealth,
)
from server.store.schema import connect, now

__all__ = ["RunStore"]

log = logging.getLogger("fusionkit.store")

SqliteWork = Callable[[sqlite3.Connection], Any]

_TERMINAL = tuple(sorted(TERMINAL_STATES))
_IN_TERMINAL = f"state IN ({', '.join('?' * len(_TERMINAL))})"

REOPEN_EVERY_S = 1.0  # a store that could not be opened is tried again at most this often
FILE_GONE = "the store file was deleted or replaced while the router was using it"


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file `path` leads to now (device, inode), or None: a deleted or replaced store file shows here."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class RunStore(BatchingStore[SqliteWork]):
    """Runs, their append-only events, idempotency keys and artifacts, in one SQLite file.

    Open it once per process (`RunStore(path)` opens and migrates the file at once, so a bad path
    fails at start), call the async methods from the event loop, and `await close()` at the end;
    `async with RunStore(path) as store:` does both. An existing store file that cannot be written
    right now (read-only, a full disk) does not fail the start: the store begins degraded and
    tries again as it is used.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__(str(path))
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusionkit-store")
        self._conn: sqlite3.Connection | None = None
        self._file: tuple[int, int] | None = None  # the file the connection has open
        self._file_gone_told: tuple[int, int] | None = None  # that file's loss was logged already
        self._next_open = 0.0
        self._shut = False  # the connection is closed for good
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

    def _dispatch(self, batch: list[Job[SqliteWork]]) -> asyncio.Future[Outcome]:
        return asyncio.get_running_loop().run_in_executor(self._executor, self._run_batch, batch)

    def _run_batch(self, batch: list[Job[SqliteWork]]) -> Outcome:
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
                return Outcome([(False, exc)] * len(batch))
            if isinstance(exc, StoreUnavailable):
                failure = exc
            else:
                failure = StoreUnavailable(reason)
                failure.__cause__ = exc
            return Outcome([(False, failure)] * len(batch), unavailable=reason)
        return Outcome(outcomes, committed=writes)

    def health(self) -> StoreHealth:
        """Whether the store can be written, as far as it knows now (`/health`); never waits on the database."""
        if not self._shut and self._conn is not None and _identity(self.path) != self._file:
            self._tell_file_gone(self._file)
            degraded = self._degraded
            return StoreHealth(status="degraded", error=FILE_GONE, since=degraded.since if degraded else None)
        return super().health()

    def _nothing(self) -> SqliteWork:
        return lambda conn: None

    async def _shutdown(self) -> None:
        def shutdown() -> None:
            self._shut = True
            if self._conn is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shutdown)
        self._executor.shutdown(wait=True)

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

    def _create_work(
        self,
        run_id: str,
        mode: str | None,
        request_json: str,
        trace_id: str | None,
        idempotency_key: str | None,
        request_hash: str | None,
        state: str,
    ) -> SqliteWork:
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
                    request_json,
                    self.owner_id,
                ),
            )
            self._append(conn, run_id, "run.created", dumps({"state": state, "mode": mode}))
            return run_record(self._require_run(conn, run_id, "*"))

        return work

    def _event_work(self, run_id: str, type: str, payload_json: str, seq: int | None) -> SqliteWork:
        def work(conn: sqlite3.Connection) -> int:
            self._require_open_run(conn, run_id)
            return self._append(conn, run_id, type, payload_json, seq)

        return work

    def _transition_work(
        self,
        run_id: str,
        state: str,
        event_type: str,
        payload_json: str,
        summary_update: dict[str, Any] | None,
        terminal_reason: str | None,
        seq: int | None,
    ) -> SqliteWork:
        def work(conn: sqlite3.Connection) -> int:
            row = self._require_open_run(conn, run_id, "summary_json")
            summary = {**json.loads(row["summary_json"]), **(summary_update or {})}
            conn.execute(
                "UPDATE runs SET state = ?, updated_at = ?, summary_json = ?, "
                "terminal_reason = COALESCE(?, terminal_reason) WHERE run_id = ?",
                (state, now(), dumps(summary), terminal_reason, run_id),
            )
            return self._append(conn, run_id, event_type, payload_json, seq)

        return work

    def _get_run_work(self, run_id: str) -> SqliteWork:
        def work(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            return run_record(row) if row is not None else None

        return work

    def _find_by_key_work(self, key: str) -> SqliteWork:
        def work(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute("SELECT * FROM runs WHERE idempotency_key = ?", (key,)).fetchone()
            return run_record(row) if row is not None else None

        return work

    def _list_runs_work(self, limit: int, before: str | None) -> SqliteWork:
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
            return [run_record(r) for r in rows]

        return work

    def _events_work(self, run_id: str, after: int, limit: int) -> SqliteWork:
        def work(conn: sqlite3.Connection) -> list[EventRecord]:
            rows = conn.execute(
                "SELECT * FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?", (run_id, after, limit)
            ).fetchall()
            return [event_record(r) for r in rows]

        return work

    def _cursors_work(self, run_ids: list[str]) -> SqliteWork:
        def work(conn: sqlite3.Connection) -> dict[str, int]:
            marks = ", ".join("?" * len(run_ids))
            rows = conn.execute(
                f"SELECT run_id, MAX(seq) FROM events WHERE run_id IN ({marks}) GROUP BY run_id", run_ids
            ).fetchall()
            return {row[0]: int(row[1]) for row in rows}

        return work

    # -- artifacts ------------------------------------------------------------------------------

    def _artifact_work(self, digest: str, data: bytes, media_type: str, run_id: str | None) -> SqliteWork:
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

        return work

    def _link_work(self, run_id: str, sha256: str) -> SqliteWork:
        def work(conn: sqlite3.Connection) -> None:
            self._require_run(conn, run_id)
            if conn.execute("SELECT 1 FROM artifacts WHERE sha256 = ?", (sha256,)).fetchone() is None:
                raise UnknownArtifact(sha256)
            conn.execute("INSERT OR IGNORE INTO run_artifacts (run_id, sha256) VALUES (?, ?)", (run_id, sha256))

        return work

    def _get_artifact_work(self, sha256: str) -> SqliteWork:
        def work(conn: sqlite3.Connection) -> ArtifactRecord | None:
            row = conn.execute("SELECT * FROM artifacts WHERE sha256 = ?", (sha256,)).fetchone()
            return ArtifactRecord(**dict(row)) if row is not None else None

        return work

    # -- leases -----------------------------------------------------------------------------------

    def _renew_work(self, lease_s: float, holder: str) -> SqliteWork:
        def work(conn: sqlite3.Connection) -> None:
            stamp = now()
            conn.execute(
                "INSERT INTO leases (owner_id, holder, acquired_at, renewed_at, expires_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (owner_id) DO UPDATE SET renewed_at = excluded.renewed_at, "
                "expires_at = excluded.expires_at",
                (self.owner_id, holder, stamp, stamp, now(lease_s)),
            )

        return work

    def _expire(self, conn: sqlite3.Connection, run_ids: list[str], reason: str) -> None:
        payload = dumps({"state": "expired", "reason": reason})
        for run_id in run_ids:
            conn.execute(
                "UPDATE runs SET state = 'expired', updated_at = ?, terminal_reason = ? WHERE run_id = ?",
                (now(), reason, run_id),
            )
            self._append(conn, run_id, "run.expired", payload)

    def _expire_lapsed_work(self, reason: str) -> SqliteWork:
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

        return work

    def _release_work(self, reason: str) -> SqliteWork:
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

        return work

    # -- retention ------------------------------------------------------------------------------

    def _prune_work(self, older_than_days: float | None, keep_runs: int | None, limit: int | None) -> SqliteWork:
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

        return work

    # -- when the store cannot be written ---------------------------------------------------------

    def _fail_damaged_work(self, runs: dict[str, str]) -> SqliteWork:
        def work(conn: sqlite3.Connection) -> list[str]:
            failed = []
            for run_id, reason in runs.items():
                row = conn.execute("SELECT state, summary_json FROM runs WHERE run_id = ?", (run_id,)).fetchone()
                if row is not None and row["state"] not in TERMINAL_STATES:
                    error = store_failure(reason)
                    summary = {**json.loads(row["summary_json"]), "error": error}
                    conn.execute(
                        "UPDATE runs SET state = 'failed', updated_at = ?, summary_json = ?, terminal_reason = ? "
                        "WHERE run_id = ?",
                        (now(), dumps(summary), STORE_FAILED, run_id),
                    )
                    self._append(conn, run_id, "run.state", dumps({"state": "failed", "error": error}))
                    failed.append(run_id)
                # else nothing is left to fail: the run is gone (a deleted store file), or ended by then
            return failed

        return work
