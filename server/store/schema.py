"""The run store's SQLite schema and its migrations, and how a connection to it is opened.

    conn = connect(Path(".fusionkit/runs.sqlite3"))   # pragmas set, schema migrated to SCHEMA_VERSION

`schema_version` holds one row per applied migration. A migration is an ordered tuple of SQL
statements; the pending ones are applied with their version rows in one transaction, so a crash
leaves the database at the version it had, never half way.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from server.store.errors import SchemaTooNew

__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "connect", "migrate", "now"]

# Entry i upgrades the schema from version i to i + 1. Never edit a shipped entry: append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: runs, their events, content-addressed artifacts and which run uses which artifact.
    (
        """CREATE TABLE runs (
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
        )""",
        "CREATE INDEX runs_created ON runs (created_at)",
        """CREATE TABLE events (
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            seq INTEGER NOT NULL,
            ts TEXT NOT NULL,
            type TEXT NOT NULL,
            payload_json TEXT NOT NULL,
            UNIQUE (run_id, seq)
        )""",
        """CREATE TABLE artifacts (
            sha256 TEXT PRIMARY KEY,
            media_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            content BLOB NOT NULL,
            created_at TEXT NOT NULL
        )""",
        """CREATE TABLE run_artifacts (
            run_id TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            PRIMARY KEY (run_id, sha256)
        )""",
    ),
    # 2: the start-up expiry scans by state; pruning asks whether any run still uses an artifact.
    (
        "CREATE INDEX runs_state ON runs (state)",
        "CREATE INDEX run_artifacts_sha256 ON run_artifacts (sha256)",
    ),
    # 3: leases. A router holds a lease (owner id, renewed_at, expires_at) and renews it while it runs; the
    #    runs it executes carry its owner id. An unfinished run whose owner holds no live lease is expired by
    #    whichever router notices, so a second router never expires a live one's runs.
    (
        """CREATE TABLE leases (
            owner_id TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            acquired_at TEXT NOT NULL,
            renewed_at TEXT NOT NULL,
            expires_at TEXT NOT NULL
        )""",
        "ALTER TABLE runs ADD COLUMN owner_id TEXT",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def now(after_s: float = 0.0) -> str:
    """The store's timestamps: ISO 8601 UTC with milliseconds, so they sort as text; `after_s` from now."""
    return (datetime.now(UTC) + timedelta(seconds=after_s)).isoformat(timespec="milliseconds")


def connect(path: Path) -> sqlite3.Connection:
    """Open the store at `path` (creating its directory) and migrate it; use it only on the calling thread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Autocommit mode: the store issues BEGIN/COMMIT itself, so one call is exactly one transaction.
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        # busy_timeout first: another process (`fusionkit runs prune`) may hold the lock while we set WAL.
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn, str(path))
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection, name: str, migrations: Sequence[tuple[str, ...]] = MIGRATIONS) -> int:
    """Apply the migrations `conn` lacks; returns the version it ends at."""
    # The version is read inside the write lock: two processes opening a new file at once must not both migrate.
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)")
        current = int(conn.execute("SELECT COALESCE(MAX(version), 0) FROM schema_version").fetchone()[0])
        if current > len(migrations):
            raise SchemaTooNew(name, current, len(migrations))
        for version, statements in enumerate(migrations[current:], start=current + 1):
            for statement in statements:
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (?, ?)", (version, now()))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return len(migrations)
