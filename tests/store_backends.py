"""The two run store backends, seen the same way by the store's test suite.

    backend = SqliteBackend(tmp_path / "runs.sqlite3")   # or PgBackend(url) on the session's PostgreSQL
    async with backend.open() as store: ...               # open_store(location): RunStore or PgRunStore
    backend.execute("UPDATE runs SET updated_at = ? WHERE run_id = ?", (LONG_AGO, run_id))   # a raw look
    with backend.write_lock(): ...                         # another process holds the lock a batch needs

`execute` takes `?` placeholders for both (PostgreSQL's are `%s`) and runs on a connection of its own:
what another process (or a forensic look) would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from server.store import RunStoreAPI
from server.store.opening import open_store

__all__ = ["Backend", "PgBackend", "SqliteBackend"]


class Backend:
    name: str
    location: str
    lock_error: str  # what the store says when another process held the lock past its wait

    def open(self) -> RunStoreAPI:
        return open_store(self.location)

    def execute(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def count(self, table: str, where: str = "TRUE", params: tuple[Any, ...] = ()) -> int:
        return int(self.execute(f"SELECT COUNT(*) FROM {table} WHERE {where}", params)[0][0])

    def write_lock(self) -> contextlib.AbstractContextManager[None]:
        raise NotImplementedError

    async def shorten_lock_wait(self, store: RunStoreAPI) -> None:
        """Make `store` give up waiting for a lock after 50 ms (5 s by default)."""
        raise NotImplementedError

    def holder(self) -> BatchHolder:
        raise NotImplementedError


class BatchHolder:
    """A read job that holds the store's batch in flight until released: `work` goes to `store._reading`."""

    work: Any

    async def started(self) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError


class _ThreadHolder(BatchHolder):
    def __init__(self) -> None:
        self._in_flight, self._release = threading.Event(), threading.Event()

        def work(conn: Any) -> None:  # on the SQLite store's thread
            self._in_flight.set()
            self._release.wait(timeout=30)

        self.work = work

    async def started(self) -> None:
        assert await asyncio.to_thread(self._in_flight.wait, 30)

    def release(self) -> None:
        self._release.set()


class _TaskHolder(BatchHolder):
    def __init__(self) -> None:
        self._in_flight, self._release = asyncio.Event(), asyncio.Event()

        async def work(conn: Any) -> None:  # in the PostgreSQL store's batch, on the event loop
            self._in_flight.set()
            await asyncio.wait_for(self._release.wait(), 30)

        self.work = work

    async def started(self) -> None:
        await asyncio.wait_for(self._in_flight.wait(), 30)

    def release(self) -> None:
        self._release.set()


class SqliteBackend(Backend):
    name = "sqlite"
    lock_error = "database is locked"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=5, isolation_level=None)
        conn.row_factory = sqlite3.Row
        return conn

    def execute(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = self.connect()
        try:
            return [tuple(row) for row in conn.execute(statement, params).fetchall()]
        finally:
            conn.close()

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        conn = self.connect()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()

    async def shorten_lock_wait(self, store: RunStoreAPI) -> None:
        await store._reading(lambda conn: conn.execute("PRAGMA busy_timeout = 50"))  # type: ignore[attr-defined]

    def holder(self) -> BatchHolder:
        return _ThreadHolder()


class PgBackend(Backend):
    name = "postgresql"
    lock_error = "canceling statement due to lock timeout"

    def __init__(self, url: str) -> None:
        self.location = url

    def execute(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.location, autocommit=True) as conn:
            cursor = conn.execute(statement.replace("?", "%s"), params)
            return [tuple(row) for row in cursor.fetchall()] if cursor.description else []

    @contextlib.contextmanager
    def write_lock(self) -> Iterator[None]:
        with psycopg.connect(self.location) as conn:
            conn.execute("LOCK TABLE runs, events, artifacts, leases IN EXCLUSIVE MODE")
            yield
            conn.rollback()

    async def shorten_lock_wait(self, store: RunStoreAPI) -> None:
        async def work(conn: Any) -> None:
            await conn.execute("SET lock_timeout = '50ms'")

        await store._reading(work)  # type: ignore[attr-defined]

    def holder(self) -> BatchHolder:
        return _TaskHolder()
