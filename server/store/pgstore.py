"""PgRunStore: the run store on PostgreSQL, shared by several router replicas.

    store = PgRunStore("postgresql://fusionkit@db:5432/fusionkit")   # migrated now, if the database answers
    run = await store.create_run(new_run_id(), mode="panel", request=body, trace_id=trace)
    store.record_event(run.run_id, 2, "model_call.started", {...})    # queued, not awaited

The same store as SQLite's RunStore (server.store.batching holds the shared part): one queue of
work per process, written one batch at a time in one transaction on a pooled connection
(psycopg 3, async, psycopg_pool), each job in its own savepoint. What PostgreSQL adds is sharing:

- The database's clock stamps runs, events and leases, so every replica agrees on what lapsed.
- A job that writes to a run first locks the run's row (`FOR NO KEY UPDATE`), so a seq the
  database assigns (`max(seq) + 1`) is never taken twice by two replicas, and a run another replica
  just expired is refused as finished, not appended to.
- An idempotency key is unique in the database: two replicas given the same key at the same moment
  make one run; the second insert waits for the first and then finds the key taken.
- Each batch that wrote events sends `NOTIFY fusionkit_events, '<run id>'` with its commit; every
  replica LISTENs and wakes its long polls (`wait_for_events`) on another replica's events at once.
- Cancels and tool results for a run another replica executes travel as rows of `commands` with a
  NOTIFY to the owner (server.store.pgrelay).

When the database cannot be reached (down, restarting, refusing connections, a lock held past
5 s, a batch with no answer within `batch_timeout_s`: a hung server, a half-open connection) every
call fails with StoreUnavailable and `health()` says degraded until a write commits
again, as with SQLite. A database that cannot be reached at start does not fail the start: the
store begins degraded and migrates once it can connect. The URL's password never reaches a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

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
    SchemaTooNew,
    StoreClosed,
    StoreLocationError,
    StoreUnavailable,
    UnknownArtifact,
    UnknownRun,
)
from server.store.opening import is_postgres_url, redact_text, redact_url
from server.store.pgrelay import PgCommandRelay
from server.store.pgschema import UNFINISHED, migrate
from server.store.records import TERMINAL_STATES, ArtifactRecord, EventRecord, RunRecord

__all__ = ["EVENTS_CHANNEL", "PgRunStore", "pg_unavailable_cause"]

log = logging.getLogger("fusionkit.store")

PgConn = AsyncConnection[DictRow]
PgWork = Callable[[PgConn], Awaitable[Any]]

EVENTS_CHANNEL = "fusionkit_events"  # payload: a run id whose events just committed
WAIT_S = 5.0  # like SQLite's busy_timeout: how long a batch waits for a connection or a row lock
STATEMENT_S = 10.0  # the database cancels a statement that runs longer (none of the store's takes near it)
CONNECT_TIMEOUT_S = 5
LISTEN_RETRY_S = 1.0
POOL_SIZE = 2  # one batch is in flight at a time; the second connection covers a reconnect
# Every connection the store opens (pool, direct, listener): TCP keepalives and a user timeout find a
# connection whose peer went away without a word (a network cut, a crashed host) within about 15 s,
# instead of the kernel's two hours; the connection then fails like any lost one (store unavailable).
CONNECTION_SETTINGS: dict[str, Any] = {
    "autocommit": True,
    "connect_timeout": CONNECT_TIMEOUT_S,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 15_000,  # ms: data sent and not acknowledged for this long fails the connection
}

# libpq names the server it could not reach; a client of the router is told what happened, not where.
_WHERE = re.compile(r'connection to server (?:at|on socket) "[^"]*"(?: \([^)]*\))?(?:, port \d+)? failed: ')


# What says the database cannot be used right now: connection failures and shutdowns, a lock or statement timeout,
# a full disk (all OperationalError), a closed connection, a read-only standby.
_UNAVAILABLE = (psycopg.OperationalError, psycopg.InterfaceError, psycopg.errors.ReadOnlySqlTransaction, OSError)


def pg_unavailable_cause(exc: BaseException) -> str | None:
    """What made the database unavailable, if `exc` says it is (else None: the call itself was at fault)."""
    if isinstance(exc, StoreUnavailable):
        return exc.reason
    if isinstance(exc, psycopg.Error) and (exc.sqlstate or "").startswith("40"):
        return None  # a deadlock or serialization failure is this call's, not the store's
    if isinstance(exc, _UNAVAILABLE):
        lines = [line for line in str(exc).splitlines() if line.strip()] or [type(exc).__name__]
        line = lines[-1] if "failed:" in lines[-1] or len(lines) == 1 else lines[0]
        return redact_text(_WHERE.sub("", line)).strip()
    return None


def _stamp(value: datetime) -> str:
    """A database time as the store's text: ISO 8601 UTC with milliseconds, as SQLite's store writes them."""
    return value.astimezone(UTC).isoformat(timespec="milliseconds")


async def _one(conn: PgConn, sql: str, params: Sequence[Any] = ()) -> DictRow | None:
    return await (await conn.execute(sql, params)).fetchone()


async def _all(conn: PgConn, sql: str, params: Sequence[Any] = ()) -> list[DictRow]:
    return await (await conn.execute(sql, params)).fetchall()


async def _hold_artifact(conn: PgConn, sha256: str) -> bool:
    """Lock a stored artifact's row against deletion until this transaction ends; False if it is gone.

    A prune on another replica cannot see a link this transaction has not committed yet: the lock
    makes that prune wait, and it looks for links again once the lock is released (`_prune_work`).
    """
    return await _one(conn, "SELECT 1 AS one FROM artifacts WHERE sha256 = %s FOR KEY SHARE", (sha256,)) is not None


async def _configure(conn: PgConn) -> None:
    # A batch that waits on another replica's row lock longer than this fails as "unavailable" (SQLite: BUSY);
    # a statement that runs away is cancelled by the database.
    await conn.execute(f"SET lock_timeout = '{int(WAIT_S * 1000)}ms'")
    await conn.execute(f"SET statement_timeout = '{int(STATEMENT_S * 1000)}ms'")


class PgRunStore(BatchingStore[PgWork]):
    """Runs, their append-only events, idempotency keys, artifacts and leases, in a PostgreSQL database.

    `PgRunStore(url)` migrates the database at once when it answers (so a schema from a newer
    fusionkit fails the start); connections are opened on first use, in the event loop that uses
    the store. `await close()` at the end; `async with PgRunStore(url) as store:` does both.
    """

    poll_s: float = 5.0  # LISTEN wakes waiters; looking again this often covers a reconnect of the listener
    # The most a batch may take, waits included: a database that stops answering (a stopped server, a
    # connection whose peer vanished) fails it as unavailable (503) instead of holding every caller.
    batch_timeout_s: float = 3 * WAIT_S + STATEMENT_S
    lapse_check_s: float | None = 1.0  # a cheap indexed look: replicas notice a dead one's lapsed lease within a second

    def __init__(self, url: str) -> None:
        super().__init__(redact_url(url))
        if not is_postgres_url(url):
            raise StoreLocationError(f"{self.location} is not a postgresql:// URL")
        try:
            psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise StoreLocationError(
                f"{self.location} is not a valid PostgreSQL URL: {redact_text(str(exc))}"
            ) from None
        self._url = url
        self._pool: AsyncConnectionPool[PgConn] | None = None
        self._pool_stale = False
        self._listener: asyncio.Task[None] | None = None
        self._listen_tried = asyncio.Event()
        self._migrated = False
        self._shut = False
        self._touched: set[str] = set()  # runs the batch in flight wrote events to: told to every replica
        self.pg_relay = PgCommandRelay(self)
        self.relay = self.pg_relay
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fusionkit-migrate") as once:
                once.submit(asyncio.run, self._migrate_now()).result()
        except Exception as exc:
            reason = pg_unavailable_cause(exc)
            if reason is None:
                raise
            self._degrade(reason)

    async def _migrate_now(self) -> None:
        async with await self._connect() as conn:
            await self._ready(conn)

    # -- connections ------------------------------------------------------------------------------

    async def _open_pool(self) -> AsyncConnectionPool[PgConn]:
        if self._pool is not None and self._pool_stale:
            # Its connections went through an outage: start afresh rather than find the dead ones one by one.
            stale, self._pool, self._pool_stale = self._pool, None, False
            await stale.close(timeout=1)
        if self._pool is None:
            self._pool = AsyncConnectionPool(
                self._url,
                min_size=1,
                max_size=POOL_SIZE,
                open=False,
                kwargs={**CONNECTION_SETTINGS, "row_factory": dict_row},
                configure=_configure,
                check=AsyncConnectionPool.check_connection,
                timeout=WAIT_S,
                name="fusionkit-store",
            )
            await self._pool.open(wait=False)
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="fusionkit-store-listen")
            # Listening before the first write: a command for this router's runs is never sent unheard.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._listen_tried.wait(), CONNECT_TIMEOUT_S)
        return self._pool

    async def _connect(self) -> PgConn:
        return await AsyncConnection.connect(self._url, row_factory=dict_row, **CONNECTION_SETTINGS)

    async def _ready(self, conn: PgConn) -> PgConn:
        """`conn`, with the schema migrated first if the database could not be reached at start."""
        if not self._migrated:
            await migrate(conn, self.location)
            self._migrated = True
        return conn

    @contextlib.asynccontextmanager
    async def _connection(self) -> AsyncIterator[PgConn]:
        if self._shut:
            raise StoreClosed(f"the run store {self.location} is closed")
        if self._degraded is not None:
            # While the database is out the pool reconnects on its own schedule and says only that it timed
            # out: each batch connects by itself instead, failing at once with the database's reason and
            # succeeding as soon as the database is back.
            self._pool_stale = self._pool is not None
            conn = await self._connect()
            async with conn:
                await _configure(conn)
                try:
                    ready = await self._ready(conn)
                except SchemaTooNew as exc:  # found only now: the database was out at start
                    raise StoreUnavailable(str(exc)) from exc
                yield ready
            return
        pool = await self._open_pool()
        try:
            async with pool.connection() as conn:
                yield await self._ready(conn)
        except PoolTimeout as exc:
            raise StoreUnavailable(await self._why_unreachable()) from exc
        except SchemaTooNew as exc:  # found only now: the database was out at start
            raise StoreUnavailable(str(exc)) from exc

    async def _why_unreachable(self) -> str:
        """Why the pool had no connection to give: the database's own reason, found by asking it directly."""
        try:
            conn = await self._connect()
        except Exception as exc:
            return pg_unavailable_cause(exc) or f"{type(exc).__name__}: {exc}"
        await conn.close()
        return f"no database connection was free within {WAIT_S:g} s"

    async def _listen(self) -> None:
        """Hear other replicas: events committed, commands for this router's runs, replies to its own."""
        channels = (EVENTS_CHANNEL, *self.pg_relay.channels)
        told = False
        while True:
            try:
                conn = await AsyncConnection.connect(self._url, **CONNECTION_SETTINGS)
                async with conn:
                    for channel in channels:
                        await conn.execute(f"LISTEN {channel}")
                    self._listen_tried.set()
                    if told:
                        log.warning("run store %s: listening to the other routers again", self.location)
                        told = False
                    self._wake(None)  # whatever was missed meanwhile is looked at again
                    async for note in conn.notifies():
                        if note.channel == EVENTS_CHANNEL:
                            self._wake((note.payload,))
                        else:
                            self.pg_relay.heard(note.channel, note.payload)
            except (psycopg.Error, OSError) as exc:
                self._listen_tried.set()
                if not told:
                    log.warning(
                        "run store %s: cannot listen to the other routers (%s); trying again every %gs",
                        self.location,
                        pg_unavailable_cause(exc) or exc,
                        LISTEN_RETRY_S,
                    )
                    told = True
            await asyncio.sleep(LISTEN_RETRY_S)

    # -- batches ----------------------------------------------------------------------------------

    def _dispatch(self, batch: list[Job[PgWork]]) -> Awaitable[Outcome]:
        return self._run_batch(batch)

    async def _run_batch(self, batch: list[Job[PgWork]]) -> Outcome:
        """`_run_batch_now`, bounded by `batch_timeout_s`: past it every job fails with StoreUnavailable.

        The late batch is cancelled, not waited for: its rollback may wait on the same silent database.
        Its transaction never committed as far as this store knows, so its writes are lost writes (the
        runs they belong to are recorded failed once the database answers again). The store is then
        degraded, so the next batch connects afresh instead of taking a pooled connection that may be
        stuck as well.
        """
        running = asyncio.ensure_future(self._run_batch_now(batch))
        done, _ = await asyncio.wait({running}, timeout=self.batch_timeout_s)
        if running in done:
            return running.result()
        running.cancel()
        running.add_done_callback(lambda late: late.cancelled() or late.exception())  # nobody waits for it
        reason = f"the database did not answer within {self.batch_timeout_s:g} s"
        return Outcome([(False, StoreUnavailable(reason))] * len(batch), unavailable=reason)

    async def _run_batch_now(self, batch: list[Job[PgWork]]) -> Outcome:
        """Run a batch in order, its writes in one transaction; each job's (ok, result or exception).

        A write batch is first tried without savepoints (two round trips fewer per job): jobs rarely
        fail, and when one does the transaction is rolled back and the batch run again with a
        savepoint per job, so the failing job undoes only itself. Never raises: whatever fails, every
        job gets an outcome, so no caller waits forever.
        """
        try:
            async with self._connection() as conn:
                try:
                    writes = any(job.writes for job in batch)
                    outcome = await self._attempt(conn, batch, writes, savepoints=False)
                    if outcome is None:
                        outcome = await self._attempt(conn, batch, writes, savepoints=True)
                    assert outcome is not None
                except BaseException:
                    if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                        with contextlib.suppress(psycopg.Error):
                            await conn.execute("ROLLBACK")
                    raise
        except Exception as exc:
            # Nothing of the batch was kept: every job failed, the ones that had succeeded too.
            reason = pg_unavailable_cause(exc)
            if reason is None:
                return Outcome([(False, exc)] * len(batch))
            failure = exc if isinstance(exc, StoreUnavailable) else StoreUnavailable(reason)
            if failure is not exc:
                failure.__cause__ = exc
            return Outcome([(False, failure)] * len(batch), unavailable=reason)
        return outcome

    async def _attempt(self, conn: PgConn, batch: list[Job[PgWork]], writes: bool, savepoints: bool) -> Outcome | None:
        """One try at a batch; None when a write job failed without a savepoint (rolled back: try with them)."""
        outcomes: list[tuple[bool, Any]] = []
        self._touched = set()
        if writes:
            await conn.execute("BEGIN")
            # The runs this batch writes, locked in one order: two replicas writing to the same runs wait for
            # each other instead of deadlocking.
            if runs := sorted({job.run_id for job in batch if job.writes and job.run_id is not None}):
                await conn.execute(
                    "SELECT 1 FROM runs WHERE run_id = ANY(%s::text[]) ORDER BY run_id FOR NO KEY UPDATE", (runs,)
                )
        for job in batch:
            if writes and savepoints:  # a failed statement aborts the transaction: each job gets its savepoint
                await conn.execute("SAVEPOINT job")
            try:
                outcomes.append((True, await job.work(conn)))
            except Exception as exc:
                if pg_unavailable_cause(exc) is not None:
                    raise  # the database failed, not this call: the rest of the batch fails with it
                if writes and not savepoints:
                    await conn.execute("ROLLBACK")
                    return None
                if writes:
                    await conn.execute("ROLLBACK TO SAVEPOINT job")
                outcomes.append((False, exc))
            if writes and savepoints:
                await conn.execute("RELEASE SAVEPOINT job")
        if writes:
            if self._touched:
                await conn.execute(
                    "SELECT pg_notify(%s, run_id) FROM unnest(%s::text[]) AS run_id",
                    (EVENTS_CHANNEL, sorted(self._touched)),
                )
            await conn.execute("COMMIT")
        return Outcome(outcomes, committed=writes)

    def _nothing(self) -> PgWork:
        async def work(conn: PgConn) -> None:
            return None

        return work

    async def _shutdown(self) -> None:
        self._shut = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self.pg_relay.close()
        if self._pool is not None:
            await self._pool.close()

    # -- helpers that run inside a transaction ----------------------------------------------------

    @staticmethod
    async def _require_run(conn: PgConn, run_id: str, columns: str = "run_id", lock: bool = False) -> DictRow:
        """The run's row (only `columns`); `lock` takes its row lock: this transaction writes the run."""
        sql = f"SELECT {columns} FROM runs WHERE run_id = %s" + (" FOR NO KEY UPDATE" if lock else "")
        row = await _one(conn, sql, (run_id,))
        if row is None:
            raise UnknownRun(run_id)
        return row

    @classmethod
    async def _require_open_run(cls, conn: PgConn, run_id: str, columns: str = "state") -> DictRow:
        """The locked row of a run that has not ended: a finished run's state and events are final."""
        row = await cls._require_run(conn, run_id, f"state, {columns}" if columns != "state" else columns, True)
        if row["state"] in TERMINAL_STATES:
            raise RunFinished(run_id, row["state"])
        return row

    async def _append(self, conn: PgConn, run_id: str, type: str, payload_json: str, seq: int | None = None) -> int:
        """Insert an event; without `seq` the next one after the run's last (its row is locked by then)."""
        if seq is None:
            row = await _one(
                conn,
                "INSERT INTO events (run_id, seq, ts, type, payload_json) "
                "SELECT %s, COALESCE(MAX(seq), 0) + 1, now(), %s, %s FROM events WHERE run_id = %s RETURNING seq",
                (run_id, type, payload_json, run_id),
            )
            assert row is not None
            seq = int(row["seq"])
        else:
            await conn.execute(
                "INSERT INTO events (run_id, seq, ts, type, payload_json) VALUES (%s, %s, now(), %s, %s)",
                (run_id, seq, type, payload_json),
            )
        self._touched.add(run_id)
        return seq

    async def _expire(self, conn: PgConn, run_ids: list[str], reason: str) -> None:
        if not run_ids:
            return
        await conn.execute(
            "UPDATE runs SET state = 'expired', updated_at = now(), terminal_reason = %s "
            "WHERE run_id = ANY(%s::text[])",
            (reason, run_ids),
        )
        await conn.execute(
            "INSERT INTO events (run_id, seq, ts, type, payload_json) "
            "SELECT r, COALESCE((SELECT MAX(seq) FROM events WHERE run_id = r), 0) + 1, now(), 'run.expired', %s "
            "FROM unnest(%s::text[]) AS r",
            (dumps({"state": "expired", "reason": reason}), run_ids),
        )
        self._touched.update(run_ids)

    # -- runs and events --------------------------------------------------------------------------

    def _create_work(
        self,
        run_id: str,
        mode: str | None,
        request_json: str,
        trace_id: str | None,
        idempotency_key: str | None,
        request_hash: str | None,
        state: str,
    ) -> PgWork:
        async def work(conn: PgConn) -> RunRecord:
            # ON CONFLICT waits for another replica inserting the same key or id, then does nothing.
            row = await _one(
                conn,
                "INSERT INTO runs (run_id, created_at, updated_at, state, mode, trace_id, idempotency_key, "
                "request_hash, request_json, owner_id) VALUES (%s, now(), now(), %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT DO NOTHING RETURNING *",
                (run_id, state, mode, trace_id, idempotency_key, request_hash, request_json, self.owner_id),
            )
            if row is None:
                if idempotency_key is not None:
                    holder = await _one(conn, "SELECT run_id FROM runs WHERE idempotency_key = %s", (idempotency_key,))
                    if holder is not None:
                        raise IdempotencyConflict(idempotency_key, holder["run_id"])
                raise DuplicateRun(run_id)
            await self._append(conn, run_id, "run.created", dumps({"state": state, "mode": mode}))
            return run_record(row, _stamp)

        return work

    def _event_work(self, run_id: str, type: str, payload_json: str, seq: int | None) -> PgWork:
        async def work(conn: PgConn) -> int:
            # One statement: inserted only while the run is open (most events of a fused request come this way).
            row = await _one(
                conn,
                "INSERT INTO events (run_id, seq, ts, type, payload_json) "
                "SELECT run_id, COALESCE(%s, (SELECT MAX(seq) FROM events WHERE run_id = %s) + 1), now(), %s, %s "
                f"FROM runs WHERE run_id = %s AND {UNFINISHED} FOR NO KEY UPDATE RETURNING seq",
                (seq, run_id, type, payload_json, run_id),
            )
            if row is None:
                await self._require_open_run(conn, run_id)  # raises why: no such run, or it has ended
                raise AssertionError(f"event of {run_id} not inserted")
            self._touched.add(run_id)
            return int(row["seq"])

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
    ) -> PgWork:
        async def work(conn: PgConn) -> int:
            if summary_update is None:
                # The intermediate states of a fused request: no summary to merge, one statement for the row.
                cursor = await conn.execute(
                    "UPDATE runs SET state = %s, updated_at = now(), terminal_reason = COALESCE(%s, terminal_reason) "
                    f"WHERE run_id = %s AND {UNFINISHED}",
                    (state, terminal_reason, run_id),
                )
                if cursor.rowcount == 0:
                    await self._require_open_run(conn, run_id)  # raises why: no such run, or it has ended
                    raise AssertionError(f"state of {run_id} not updated")
            else:
                row = await self._require_open_run(conn, run_id, "summary_json")
                summary = {**json.loads(row["summary_json"]), **summary_update}
                await conn.execute(
                    "UPDATE runs SET state = %s, updated_at = now(), summary_json = %s, "
                    "terminal_reason = COALESCE(%s, terminal_reason) WHERE run_id = %s",
                    (state, dumps(summary), terminal_reason, run_id),
                )
            return await self._append(conn, run_id, event_type, payload_json, seq)

        return work

    def _get_run_work(self, run_id: str) -> PgWork:
        async def work(conn: PgConn) -> RunRecord | None:
            row = await _one(conn, "SELECT * FROM runs WHERE run_id = %s", (run_id,))
            return run_record(row, _stamp) if row is not None else None

        return work

    def _find_by_key_work(self, key: str) -> PgWork:
        async def work(conn: PgConn) -> RunRecord | None:
            row = await _one(conn, "SELECT * FROM runs WHERE idempotency_key = %s", (key,))
            return run_record(row, _stamp) if row is not None else None

        return work

    def _list_runs_work(self, limit: int, before: str | None) -> PgWork:
        async def work(conn: PgConn) -> list[RunRecord]:
            if before is None:
                rows = await _all(
                    conn, "SELECT * FROM runs ORDER BY created_at DESC, created_order DESC LIMIT %s", (limit,)
                )
            else:
                rows = await _all(
                    conn,
                    "SELECT * FROM runs WHERE (created_at, created_order) < "
                    "(SELECT created_at, created_order FROM runs WHERE run_id = %s) "
                    "ORDER BY created_at DESC, created_order DESC LIMIT %s",
                    (before, limit),
                )
            return [run_record(r, _stamp) for r in rows]

        return work

    def _events_work(self, run_id: str, after: int, limit: int) -> PgWork:
        async def work(conn: PgConn) -> list[EventRecord]:
            rows = await _all(
                conn,
                "SELECT * FROM events WHERE run_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                (run_id, after, limit),
            )
            return [event_record(r, _stamp) for r in rows]

        return work

    def _cursors_work(self, run_ids: list[str]) -> PgWork:
        async def work(conn: PgConn) -> dict[str, int]:
            rows = await _all(
                conn,
                "SELECT run_id, MAX(seq) AS seq FROM events WHERE run_id = ANY(%s::text[]) GROUP BY run_id",
                (run_ids,),
            )
            return {row["run_id"]: int(row["seq"]) for row in rows}

        return work

    # -- artifacts --------------------------------------------------------------------------------

    def _artifact_work(self, digest: str, data: bytes, media_type: str, run_id: str | None) -> PgWork:
        async def work(conn: PgConn) -> str:
            if run_id is not None:
                await self._require_run(conn, run_id)
            while True:
                inserted = await _one(
                    conn,
                    "INSERT INTO artifacts (sha256, media_type, size, content, created_at) "
                    "VALUES (%s, %s, %s, %s, now()) ON CONFLICT (sha256) DO NOTHING RETURNING 1 AS one",
                    (digest, media_type, len(data), data),
                )
                # Stored already: hold it against a prune until the link below commits. None means another
                # replica's prune deleted it since the insert looked, so it is stored again.
                if run_id is None or inserted is not None or await _hold_artifact(conn, digest):
                    break
            if run_id is not None:
                await conn.execute(
                    "INSERT INTO run_artifacts (run_id, sha256) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                    (run_id, digest),
                )
            return digest

        return work

    def _link_work(self, run_id: str, sha256: str) -> PgWork:
        async def work(conn: PgConn) -> None:
            await self._require_run(conn, run_id)
            if not await _hold_artifact(conn, sha256):
                raise UnknownArtifact(sha256)
            await conn.execute(
                "INSERT INTO run_artifacts (run_id, sha256) VALUES (%s, %s) ON CONFLICT DO NOTHING", (run_id, sha256)
            )

        return work

    def _get_artifact_work(self, sha256: str) -> PgWork:
        async def work(conn: PgConn) -> ArtifactRecord | None:
            row = await _one(conn, "SELECT * FROM artifacts WHERE sha256 = %s", (sha256,))
            if row is None:
                return None
            return ArtifactRecord(
                sha256=row["sha256"],
                media_type=row["media_type"],
                size=row["size"],
                content=bytes(row["content"]),
                created_at=_stamp(row["created_at"]),
            )

        return work

    # -- leases -----------------------------------------------------------------------------------

    def _renew_work(self, lease_s: float, holder: str) -> PgWork:
        async def work(conn: PgConn) -> None:
            await conn.execute(
                "INSERT INTO leases (owner_id, holder, acquired_at, renewed_at, expires_at) "
                "VALUES (%s, %s, now(), now(), now() + make_interval(secs => %s)) "
                "ON CONFLICT (owner_id) DO UPDATE SET renewed_at = excluded.renewed_at, "
                "expires_at = excluded.expires_at",
                (self.owner_id, holder, lease_s),
            )

        return work

    def _expire_lapsed_work(self, reason: str) -> PgWork:
        async def work(conn: PgConn) -> list[str]:
            # SKIP LOCKED: a run another replica is expiring (or still writing) is left to it this time.
            rows = await _all(
                conn,
                f"SELECT run_id FROM runs WHERE {UNFINISHED} AND owner_id IS DISTINCT FROM %s AND NOT EXISTS "
                "(SELECT 1 FROM leases WHERE leases.owner_id = runs.owner_id AND leases.expires_at > now()) "
                "ORDER BY run_id FOR NO KEY UPDATE SKIP LOCKED",
                (self.owner_id,),
            )
            lapsed = [row["run_id"] for row in rows]
            await self._expire(conn, lapsed, reason)
            await conn.execute("DELETE FROM leases WHERE expires_at <= now() AND owner_id <> %s", (self.owner_id,))
            return lapsed

        return work

    def _release_work(self, reason: str) -> PgWork:
        async def work(conn: PgConn) -> list[str]:
            rows = await _all(
                conn,
                f"SELECT run_id FROM runs WHERE owner_id = %s AND {UNFINISHED} ORDER BY run_id FOR NO KEY UPDATE",
                (self.owner_id,),
            )
            mine = [row["run_id"] for row in rows]
            await self._expire(conn, mine, reason)
            await conn.execute("DELETE FROM leases WHERE owner_id = %s", (self.owner_id,))
            return mine

        return work

    async def lease_is_live(self, owner_id: str) -> bool:
        """Whether `owner_id` holds a lease that has not lapsed, by the database's clock."""

        async def work(conn: PgConn) -> bool:
            row = await _one(conn, "SELECT expires_at > now() AS live FROM leases WHERE owner_id = %s", (owner_id,))
            return bool(row and row["live"])

        live: bool = await self._reading(work)
        return live

    # -- retention --------------------------------------------------------------------------------

    def _prune_work(self, older_than_days: float | None, keep_runs: int | None, limit: int | None) -> PgWork:
        conditions: list[str] = []
        params: list[Any] = []
        if older_than_days is not None:
            conditions.append("updated_at < now() - %s::float8 * interval '1 day'")
            params.append(older_than_days)
        if keep_runs is not None:
            conditions.append(
                f"run_id IN (SELECT run_id FROM runs WHERE NOT ({UNFINISHED}) "
                "ORDER BY created_at DESC, created_order DESC OFFSET %s)"
            )
            params.append(keep_runs)

        async def work(conn: PgConn) -> int:
            rows = await _all(
                conn,
                f"SELECT run_id FROM runs WHERE NOT ({UNFINISHED}) AND ({' OR '.join(conditions)}) "
                "LIMIT %s FOR UPDATE SKIP LOCKED",
                (*params, limit),
            )
            doomed = [row["run_id"] for row in rows]
            orphaned: list[str] = []
            if doomed:
                # Artifacts the doomed runs used go with them unless another run uses them too.
                used = await _all(
                    conn, "SELECT DISTINCT sha256 FROM run_artifacts WHERE run_id = ANY(%s::text[])", (doomed,)
                )
                orphaned = [row["sha256"] for row in used]
                for table in ("events", "run_artifacts", "runs"):
                    await conn.execute(f"DELETE FROM {table} WHERE run_id = ANY(%s::text[])", (doomed,))
            # Two statements: the first locks the artifacts no run uses, waiting for any replica that holds
            # one while it links it (_hold_artifact); the second starts a new snapshot, so it sees those
            # links and keeps what they now use. In sha256 order, so two pruning replicas never deadlock.
            unused = await _all(
                conn,
                "SELECT sha256 FROM artifacts WHERE "
                "(sha256 = ANY(%s::text[]) OR created_at < now() - %s::float8 * interval '1 day') "
                "AND NOT EXISTS (SELECT 1 FROM run_artifacts WHERE run_artifacts.sha256 = artifacts.sha256) "
                "ORDER BY sha256 FOR UPDATE",
                (orphaned, older_than_days),
            )
            await conn.execute(
                "DELETE FROM artifacts WHERE sha256 = ANY(%s::text[]) "
                "AND NOT EXISTS (SELECT 1 FROM run_artifacts WHERE run_artifacts.sha256 = artifacts.sha256)",
                ([row["sha256"] for row in unused],),
            )
            await self.pg_relay.prune(conn)
            return len(doomed)

        return work

    # -- when the store cannot be written ---------------------------------------------------------

    def _fail_damaged_work(self, runs: dict[str, str]) -> PgWork:
        async def work(conn: PgConn) -> list[str]:
            failed = []
            for run_id, reason in runs.items():
                row = await _one(
                    conn, "SELECT state, summary_json FROM runs WHERE run_id = %s FOR NO KEY UPDATE", (run_id,)
                )
                if row is not None and row["state"] not in TERMINAL_STATES:
                    error = store_failure(reason)
                    summary = {**json.loads(row["summary_json"]), "error": error}
                    await conn.execute(
                        "UPDATE runs SET state = 'failed', updated_at = now(), summary_json = %s, "
                        "terminal_reason = %s WHERE run_id = %s",
                        (dumps(summary), STORE_FAILED, run_id),
                    )
                    await self._append(conn, run_id, "run.state", dumps({"state": "failed", "error": error}))
                    failed.append(run_id)
            return failed

        return work
