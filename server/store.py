"""The run store (SPEC §7): runs, their append-only events, idempotency keys and artifacts, in SQLite.

    store = RunStore(".fusionkit/runs.sqlite3")
    run = await store.create_run(new_run_id(), mode="panel", request=body, trace_id=trace)
    seq = await store.append_event(run.run_id, "model_call.started", {...})
    await store.transition(run.run_id, "completed", summary_update={...})

All database work happens on one dedicated thread that owns the connection, so the event loop
never blocks on SQLite, writes never contend with each other, and a run's sequence numbers are
assigned inside the transaction that writes the event: concurrent callers can neither lose nor
duplicate one. Each state change is one transaction. The schema is versioned and migrated here.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar
from uuid import uuid4

from pydantic import BaseModel

__all__ = [
    "TERMINAL_STATES",
    "ArtifactRecord",
    "EventRecord",
    "IdempotencyConflict",
    "RunRecord",
    "RunState",
    "RunStore",
    "is_valid_run_id",
    "new_run_id",
]

T = TypeVar("T")

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
TERMINAL_STATES = frozenset({"completed", "failed", "cancelled", "expired"})
_RUN_ID = re.compile(r"^run_[0-9a-f]{24}$")

# Each entry upgrades the schema by one version; never edit a shipped entry, append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        state TEXT NOT NULL,
        mode TEXT,
        trace_id TEXT,
        idempotency_key TEXT UNIQUE,
        request_hash TEXT,
        request_json TEXT NOT NULL,
        summary_json TEXT NOT NULL DEFAULT '{}',
        terminal_reason TEXT
    );
    CREATE INDEX runs_created ON runs (created_at);
    CREATE TABLE events (
        run_id TEXT NOT NULL REFERENCES runs (run_id),
        seq INTEGER NOT NULL,
        ts TEXT NOT NULL,
        type TEXT NOT NULL,
        payload_json TEXT NOT NULL,
        UNIQUE (run_id, seq)
    );
    CREATE TABLE artifacts (
        sha256 TEXT PRIMARY KEY,
        media_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        content BLOB NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE run_artifacts (
        run_id TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        PRIMARY KEY (run_id, sha256)
    );
    """,
]


def new_run_id() -> str:
    return f"run_{uuid4().hex[:24]}"


def is_valid_run_id(value: str) -> bool:
    return bool(_RUN_ID.match(value))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class IdempotencyConflict(Exception):
    """A run with this idempotency key exists already."""


class RunRecord(BaseModel):
    run_id: str
    created_at: str
    updated_at: str
    state: str
    mode: str | None
    trace_id: str | None
    idempotency_key: str | None
    request_hash: str | None
    request: dict[str, Any]
    summary: dict[str, Any]
    terminal_reason: str | None


class EventRecord(BaseModel):
    run_id: str
    seq: int
    ts: str
    type: str
    payload: dict[str, Any]


class ArtifactRecord(BaseModel):
    sha256: str
    media_type: str
    size: int
    content: bytes
    created_at: str


class RunStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusionkit-store")
        self._local = threading.local()
        # Open (and migrate) eagerly so a bad path fails at start, not on the first request.
        self._executor.submit(self._connection).result()

    # -- plumbing ---------------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=5000")
            conn.execute("PRAGMA foreign_keys=ON")
            self._migrate(conn)
            self._local.conn = conn
        return conn

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)")
        current = conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0]
        for version, script in enumerate(MIGRATIONS[current:], start=current + 1):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for statement in filter(str.strip, script.split(";")):
                    conn.execute(statement)
                conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, _now()))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in one transaction on the store's thread."""

        def transaction() -> T:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = work(conn)
                conn.execute("COMMIT")
                return result
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        return await asyncio.get_running_loop().run_in_executor(self._executor, transaction)

    @staticmethod
    def _append(conn: sqlite3.Connection, run_id: str, type: str, payload: dict[str, Any]) -> int:
        seq = int(
            conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM events WHERE run_id = ?", (run_id,)).fetchone()[0]
        )
        conn.execute(
            "INSERT INTO events (run_id, seq, ts, type, payload_json) VALUES (?, ?, ?, ?, ?)",
            (run_id, seq, _now(), type, json.dumps(payload, default=str)),
        )
        return seq

    @staticmethod
    def _record(row: sqlite3.Row) -> RunRecord:
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
        def work(conn: sqlite3.Connection) -> RunRecord:
            now = _now()
            try:
                conn.execute(
                    "INSERT INTO runs (run_id, created_at, updated_at, state, mode, trace_id, idempotency_key, "
                    "request_hash, request_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        run_id,
                        now,
                        now,
                        state,
                        mode,
                        trace_id,
                        idempotency_key,
                        request_hash,
                        json.dumps(request, default=str),
                    ),
                )
            except sqlite3.IntegrityError as exc:
                if idempotency_key is not None and "idempotency_key" in str(exc):
                    raise IdempotencyConflict(idempotency_key) from None
                raise
            self._append(conn, run_id, "run.created", {"state": state, "mode": mode})
            return self._record(conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone())

        return await self._run(work)

    async def append_event(self, run_id: str, type: str, payload: dict[str, Any]) -> int:
        return await self._run(lambda conn: self._append(conn, run_id, type, payload))

    async def transition(
        self,
        run_id: str,
        state: RunState | str,
        *,
        event_type: str = "run.state",
        payload: dict[str, Any] | None = None,
        summary_update: dict[str, Any] | None = None,
        terminal_reason: str | None = None,
    ) -> int:
        def work(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT summary_json FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise KeyError(run_id)
            summary = {**json.loads(row["summary_json"]), **(summary_update or {})}
            conn.execute(
                "UPDATE runs SET state = ?, updated_at = ?, summary_json = ?, "
                "terminal_reason = COALESCE(?, terminal_reason) WHERE run_id = ?",
                (state, _now(), json.dumps(summary, default=str), terminal_reason, run_id),
            )
            return self._append(conn, run_id, event_type, {"state": state, **(payload or {})})

        return await self._run(work)

    async def get_run(self, run_id: str) -> RunRecord | None:
        def work(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            return self._record(row) if row else None

        return await self._run(work)

    async def find_by_idempotency_key(self, key: str) -> RunRecord | None:
        def work(conn: sqlite3.Connection) -> RunRecord | None:
            row = conn.execute("SELECT * FROM runs WHERE idempotency_key = ?", (key,)).fetchone()
            return self._record(row) if row else None

        return await self._run(work)

    async def list_runs(self, limit: int = 20, before: str | None = None) -> list[RunRecord]:
        def work(conn: sqlite3.Connection) -> list[RunRecord]:
            rows = conn.execute(
                "SELECT * FROM runs WHERE created_at < COALESCE(?, '9999') ORDER BY created_at DESC, rowid DESC "
                "LIMIT ?",
                (before, limit),
            ).fetchall()
            return [self._record(r) for r in rows]

        return await self._run(work)

    async def events(self, run_id: str, after: int = 0, limit: int = 100) -> list[EventRecord]:
        def work(conn: sqlite3.Connection) -> list[EventRecord]:
            rows = conn.execute(
                "SELECT * FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?", (run_id, after, limit)
            ).fetchall()
            return [
                EventRecord(
                    run_id=r["run_id"], seq=r["seq"], ts=r["ts"], type=r["type"], payload=json.loads(r["payload_json"])
                )
                for r in rows
            ]

        return await self._run(work)

    # -- artifacts ------------------------------------------------------------------------------

    async def put_artifact(
        self, content: bytes | str, media_type: str = "text/plain", *, run_id: str | None = None
    ) -> str:
        data = content.encode() if isinstance(content, str) else content
        digest = hashlib.sha256(data).hexdigest()

        def work(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT OR IGNORE INTO artifacts (sha256, media_type, size, content, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (digest, media_type, len(data), data, _now()),
            )
            if run_id is not None:
                conn.execute("INSERT OR IGNORE INTO run_artifacts (run_id, sha256) VALUES (?, ?)", (run_id, digest))
            return digest

        return await self._run(work)

    async def get_artifact(self, sha256: str) -> ArtifactRecord | None:
        def work(conn: sqlite3.Connection) -> ArtifactRecord | None:
            row = conn.execute("SELECT * FROM artifacts WHERE sha256 = ?", (sha256,)).fetchone()
            return ArtifactRecord(**dict(row)) if row else None

        return await self._run(work)

    # -- lifecycle ------------------------------------------------------------------------------

    async def expire_unfinished(self, reason: str = "router_restarted") -> int:
        """Runs a previous router left unfinished can never finish: mark them expired."""

        def work(conn: sqlite3.Connection) -> int:
            placeholders = ",".join("?" * len(TERMINAL_STATES))
            rows = conn.execute(
                f"SELECT run_id FROM runs WHERE state NOT IN ({placeholders})", tuple(TERMINAL_STATES)
            ).fetchall()
            for row in rows:
                conn.execute(
                    "UPDATE runs SET state = 'expired', updated_at = ?, terminal_reason = ? WHERE run_id = ?",
                    (_now(), reason, row["run_id"]),
                )
                self._append(conn, row["run_id"], "run.state", {"state": "expired", "reason": reason})
            return len(rows)

        return await self._run(work)

    async def prune(self, older_than_days: float) -> int:
        """Delete finished runs older than the retention, their events, and artifacts nothing references."""
        cutoff = (datetime.now(UTC) - timedelta(days=older_than_days)).isoformat(timespec="milliseconds")

        def work(conn: sqlite3.Connection) -> int:
            placeholders = ",".join("?" * len(TERMINAL_STATES))
            ids = [
                r[0]
                for r in conn.execute(
                    f"SELECT run_id FROM runs WHERE updated_at < ? AND state IN ({placeholders})",
                    (cutoff, *TERMINAL_STATES),
                ).fetchall()
            ]
            for run_id in ids:
                conn.execute("DELETE FROM events WHERE run_id = ?", (run_id,))
                conn.execute("DELETE FROM run_artifacts WHERE run_id = ?", (run_id,))
                conn.execute("DELETE FROM runs WHERE run_id = ?", (run_id,))
            conn.execute("DELETE FROM artifacts WHERE sha256 NOT IN (SELECT sha256 FROM run_artifacts)")
            return len(ids)

        return await self._run(work)

    async def close(self) -> None:
        def shutdown() -> None:
            conn = getattr(self._local, "conn", None)
            if conn is not None:
                conn.close()
                self._local.conn = None

        await asyncio.get_running_loop().run_in_executor(self._executor, shutdown)
        self._executor.shutdown(wait=True)
