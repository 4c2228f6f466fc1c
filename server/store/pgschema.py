"""The run store's PostgreSQL schema and its migrations.

    await migrate(conn, "postgresql://fk@db/fusionkit")   # to PG_SCHEMA_VERSION; SchemaTooNew if newer

The same tables as the SQLite schema (server.store.schema), in PostgreSQL's types: times are
`timestamptz` from the database's clock (every replica agrees on it), artifacts `bytea`, JSON is
kept as the text the store wrote (a client's lone surrogate escape is valid JSON but not `jsonb`).
`created_order` stands in for SQLite's rowid: runs created in the same millisecond keep their order.
`commands` carries cancels and tool results to the replica executing a run (server.store.pgstore).
Migrations run in one transaction under an advisory lock, so replicas starting together migrate once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from server.store.errors import SchemaTooNew

__all__ = ["PG_MIGRATIONS", "PG_SCHEMA_VERSION", "UNFINISHED", "migrate"]

# The states a run can still leave, as SQL: the partial index below serves exactly this predicate.
UNFINISHED = "state NOT IN ('completed', 'failed', 'cancelled', 'expired')"

# Entry i upgrades the schema from version i to i + 1. Never edit a shipped entry: append a new one.
PG_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: what SQLite's migrations 1-3 made (runs, events, artifacts, leases), plus the command queue.
    (
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY,
            created_order BIGSERIAL NOT NULL,
            created_at TIMESTAMPTZ NOT NULL,
            updated_at TIMESTAMPTZ NOT NULL,
            state TEXT NOT NULL,
            mode TEXT,
            trace_id TEXT,
            idempotency_key TEXT UNIQUE,
            request_hash TEXT,
            request_json TEXT NOT NULL,
            summary_json TEXT NOT NULL DEFAULT '{}',
            terminal_reason TEXT,
            owner_id TEXT
        )""",
        "CREATE INDEX runs_created ON runs (created_at, created_order)",
        # Every replica looks for lapsed runs every second: only the unfinished ones are indexed.
        f"CREATE INDEX runs_unfinished ON runs (owner_id) WHERE {UNFINISHED}",
        """CREATE TABLE events (
            run_id TEXT NOT NULL REFERENCES runs (run_id),
            seq INTEGER NOT NULL,
            ts TIMESTAMPTZ NOT NULL,
            type TEXT NOT NULL,
            payload_json TEXT NOT NULL,
            PRIMARY KEY (run_id, seq)
        )""",
        """CREATE TABLE artifacts (
            sha256 TEXT PRIMARY KEY,
            media_type TEXT NOT NULL,
            size INTEGER NOT NULL,
            content BYTEA NOT NULL,
            created_at TIMESTAMPTZ NOT NULL
        )""",
        """CREATE TABLE run_artifacts (
            run_id TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            PRIMARY KEY (run_id, sha256)
        )""",
        "CREATE INDEX run_artifacts_sha256 ON run_artifacts (sha256)",
        """CREATE TABLE leases (
            owner_id TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            acquired_at TIMESTAMPTZ NOT NULL,
            renewed_at TIMESTAMPTZ NOT NULL,
            expires_at TIMESTAMPTZ NOT NULL
        )""",
        """CREATE TABLE commands (
            id BIGSERIAL PRIMARY KEY,
            owner_id TEXT NOT NULL,
            run_id TEXT NOT NULL,
            kind TEXT NOT NULL,
            body_json TEXT NOT NULL,
            created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            reply_json TEXT,
            replied_at TIMESTAMPTZ
        )""",
    ),
)
PG_SCHEMA_VERSION = len(PG_MIGRATIONS)

# Any constant will do: it only keeps two replicas from migrating the same database at once.
_MIGRATION_LOCK = 0x66757369  # "fusi"


async def migrate(conn: Any, name: str, migrations: Sequence[tuple[str, ...]] = PG_MIGRATIONS) -> int:
    """Apply the migrations the database lacks (`conn` in autocommit mode); returns the version it ends at."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        )
        row = await (await conn.execute("SELECT COALESCE(MAX(version), 0) AS version FROM schema_version")).fetchone()
        current = int(row["version"] if isinstance(row, dict) else row[0])
        if current > len(migrations):
            raise SchemaTooNew(name, current, len(migrations))
        for version, statements in enumerate(migrations[current:], start=current + 1):
            for statement in statements:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_version (version, applied_at) VALUES (%s, now())", (version,))
    return len(migrations)
