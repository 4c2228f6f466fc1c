"""What the PostgreSQL run store adds to the shared suite (test_store.py), on a real PostgreSQL server:
its schema and migrations, a database that goes away and comes back, and two stores on one database
standing in for two router replicas: one run per idempotency key, gapless seqs, events heard through
LISTEN/NOTIFY, and commands carried to the replica that owns a run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

import pytest
from click.testing import CliRunner
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row

from fusionkit_cli.main import cli
from server.store import (
    IdempotencyConflict,
    StoreUnavailable,
    new_run_id,
)
from server.store.errors import SchemaTooNew
from server.store.pgschema import PG_SCHEMA_VERSION
from server.store.pgstore import PgRunStore
from server.store.relay import Command, OwnerGone, OwnerSilent, Reply
from tests.pgserver import PostgresServer
from tests.store_backends import PgBackend

REQUEST = {"model": "fusionkit/panel", "messages": [{"role": "user", "content": "hi"}]}
GUARD_S = 60  # only a hang takes this long


@contextlib.asynccontextmanager
async def replicas(url: str, count: int = 2) -> AsyncIterator[list[PgRunStore]]:
    """`count` stores on one database, as `count` router replicas would open it."""
    stores = [PgRunStore(url) for _ in range(count)]
    try:
        yield stores
    finally:
        for store in stores:
            await store.close()


async def new_run(store: PgRunStore, **fields: str) -> str:
    run_id = new_run_id()
    await store.create_run(run_id, mode="panel", request=REQUEST, trace_id=None, **fields)  # type: ignore[arg-type]
    return run_id


async def until_idle_waiting(store: PgRunStore, run_id: str) -> None:
    """Until `store` waits on `run_id` with nothing left to read: only a notification can wake it then."""
    for _ in range(1000):
        if run_id in store._watchers and not store._in_flight and not store._queue:
            return
        await asyncio.sleep(0.01)  # the store's own state, looked at from the same event loop
    raise AssertionError("the store never started waiting")


async def test_the_schema_is_created_once_versioned_and_a_newer_one_refused(pg_url: str) -> None:
    backend = PgBackend(pg_url)
    async with replicas(pg_url, 3):  # three replicas starting together migrate once
        pass
    assert [row[0] for row in backend.execute("SELECT version FROM schema_version ORDER BY version")] == list(
        range(1, PG_SCHEMA_VERSION + 1)
    )
    tables = {row[0] for row in backend.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert {"schema_version", "runs", "events", "artifacts", "run_artifacts", "leases", "commands"} <= tables
    backend.execute("INSERT INTO schema_version VALUES (?, now())", (PG_SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNew, match=f"version {PG_SCHEMA_VERSION + 1}"):
        PgRunStore(pg_url)


async def test_a_bad_url_fails_at_start_and_a_password_is_never_shown(pg_server: PostgresServer) -> None:
    with pytest.raises(ValueError, match="not a valid PostgreSQL URL") as caught:
        PgRunStore("postgresql://fk:hunter2@[::1/db")
    assert "hunter2" not in str(caught.value)
    store = PgRunStore(f"postgresql://postgres:hunter2@127.0.0.1:{pg_server.port}/postgres")
    try:
        assert "hunter2" not in store.location and store.location.startswith("postgresql://postgres@127.0.0.1")
    finally:
        await store.close()


async def test_a_password_given_as_a_query_parameter_is_never_shown_either(
    pg_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    # libpq reads `?password=` too; a database that is not there makes the store log its URL (degraded at start).
    url = pg_server.url("not_there") + "?sslmode=disable&password=hunter2"
    with caplog.at_level(logging.ERROR, logger="fusionkit.store"):
        store = PgRunStore(url)
    try:
        assert store.location.endswith("/not_there?sslmode=disable&password=***")
        assert store.health().status == "degraded" and "hunter2" not in (store.health().error or "")
        (line,) = [r.getMessage() for r in caplog.records if "cannot be used" in r.getMessage()]
        assert store.location in line and "hunter2" not in line
    finally:
        await store.close()


async def test_a_database_that_is_not_there_yet_starts_degraded_and_recovers(pg_server: PostgresServer) -> None:
    name = "later_" + new_run_id()[4:16]
    store = PgRunStore(pg_server.url(name))
    try:
        health = store.health()
        assert health.status == "degraded" and f'database "{name}" does not exist' in (health.error or "")
        with pytest.raises(StoreUnavailable, match="does not exist") as caught:
            await new_run(store)
        assert (caught.value.status, caught.value.code) == (503, "store_unavailable")
        assert "127.0.0.1" not in caught.value.message  # the client is not told where the database is

        pg_server.sql(f"CREATE DATABASE {name}")
        run_id = await new_run(store)  # migrated on the first connection, then written
        assert store.health().status == "ok"
        assert [e.type for e in await store.events(run_id)] == ["run.created"]
    finally:
        await store.close()


@pytest.mark.slow  # the first batch after the cut waits the pool's 5 s for a connection, as a router would
async def test_an_outage_fails_the_runs_that_lost_writes_once_the_database_is_back(
    pg_server: PostgresServer, pg_url: str
) -> None:
    database = pg_url.rsplit("/", 1)[1]
    async with replicas(pg_url, 1) as (store,):
        run_id = await new_run(store)
        await store.transition(run_id, "generating")
        # The database refuses this store: its connections are cut and no new one is let in.
        pg_server.sql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS false")
        pg_server.sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (database,),
        )
        try:
            told: list[str] = []
            store.record_event(run_id, 3, "model_call.completed", {}, lost=lambda: told.append("event 3"))
            with pytest.raises(StoreUnavailable) as caught:
                await store.transition(run_id, "completed", seq=4, terminal_reason="completed")
            assert "not currently accepting connections" in caught.value.reason or "terminat" in caught.value.reason
            assert store.health().status == "degraded" and told == ["event 3"]
        finally:
            pg_server.sql(f"ALTER DATABASE {database} ALLOW_CONNECTIONS true")

        await new_run(store)  # the next write that commits finds the database back and fails the damaged run
        record = await store.get_run(run_id)
        events = await store.events(run_id)
        assert store.health().status == "ok"
        assert record is not None and (record.state, record.terminal_reason) == ("failed", "store_unavailable")
        assert [(e.seq, e.payload.get("state")) for e in events] == [(1, "queued"), (2, "generating"), (3, "failed")]


@pytest.mark.slow  # waits out the batch bound (1 s here) twice, and the database's recovery
async def test_a_database_that_stops_answering_fails_writes_within_the_bound_and_recovers(
    pg_server: PostgresServer, pg_url: str
) -> None:
    async with replicas(pg_url, 2) as (store, closing):
        for each in (store, closing):
            each.batch_timeout_s = 1.0
        run_id = await new_run(store)
        await closing.renew_lease(60, "replica b")
        with pg_server.frozen():
            # Without the bound, each of these waited for the database forever (GUARD_S ends such a test).
            with pytest.raises(StoreUnavailable, match="did not answer within 1 s") as caught:
                await asyncio.wait_for(store.transition(run_id, "generating"), GUARD_S)
            assert (caught.value.status, caught.value.code) == (503, "store_unavailable")
            assert store.health().status == "degraded"
            await asyncio.wait_for(closing.close(), GUARD_S)  # a router stopping meanwhile stops
        await new_run(store)  # the database answers again: the next write commits, the store recovers
        assert store.health().status == "ok"
        record = await store.get_run(run_id)
        assert record is not None and (record.state, record.terminal_reason) == ("failed", "store_unavailable")


async def test_two_replicas_given_one_idempotency_key_at_once_make_one_run(pg_url: str) -> None:
    async with replicas(pg_url) as (a, b):
        for attempt in range(20):
            key = f"key-{attempt}"
            outcomes = await asyncio.gather(
                new_run(a, idempotency_key=key, request_hash="same"),
                new_run(b, idempotency_key=key, request_hash="same"),
                return_exceptions=True,
            )
            made = [o for o in outcomes if isinstance(o, str)]
            refused = [o for o in outcomes if isinstance(o, IdempotencyConflict)]
            assert len(made) == 1 and len(refused) == 1, outcomes
            assert refused[0].run_id == made[0]  # the loser is told which run holds the key: it replays that one
        assert len(await a.list_runs(limit=100)) == 20


async def test_appenders_on_two_replicas_share_one_gapless_log(pg_url: str) -> None:
    async with replicas(pg_url) as (a, b):
        run_ids = [await new_run(a) for _ in range(5)]

        async def appender(n: int) -> list[int]:
            store = (a, b)[n % 2]
            return [await store.append_event(run_ids[n % 5], "tick", {"n": n}) for _ in range(3)]

        returned = await asyncio.gather(*(appender(n) for n in range(40)))
        for index, run_id in enumerate(run_ids):
            seqs = [e.seq for e in await b.events(run_id, limit=1000)]
            assert seqs == list(range(1, 26))  # run.created and 8 appenders x 3 events, from both replicas
            mine = sorted(seq for n, got in enumerate(returned) if n % 5 == index for seq in got)
            assert mine == list(range(2, 26))


async def test_a_long_poll_on_one_replica_is_woken_by_another_replicas_commit(pg_url: str) -> None:
    async with replicas(pg_url) as (a, b):
        b.poll_s = 3600.0  # only a notification can wake it
        run_id = await new_run(a)
        waiting = asyncio.ensure_future(b.wait_for_events(run_id, after=1, wait_s=3600))
        await until_idle_waiting(b, run_id)
        assert not waiting.done()
        await a.append_event(run_id, "model_call.started", {})
        await asyncio.wait_for(waiting, 30)
        assert [e.seq for e in await b.events(run_id, after=1)] == [2]
        # A run that ends wakes its waiters too, and a finished run is not waited on at all.
        later = asyncio.ensure_future(b.wait_for_events(run_id, after=2, wait_s=3600))
        await until_idle_waiting(b, run_id)
        await a.transition(run_id, "cancelled", terminal_reason="cancelled")
        await asyncio.wait_for(later, 30)
        await asyncio.wait_for(b.wait_for_events(run_id, after=3, wait_s=3600), 30)


async def until_waiting_for_a_lock(conn: AsyncConnection[DictRow], task: asyncio.Task[int]) -> None:
    """Until some session of the database waits for a row lock, or `task` ends without waiting for one."""
    waiting = "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    for _ in range(GUARD_S * 100):
        row = await (await conn.execute(waiting)).fetchone()
        if task.done() or (row is not None and row["n"] > 0):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the prune neither ended nor waited")


@pytest.mark.parametrize("how", ["stored again", "linked"])
async def test_a_prune_on_one_replica_never_takes_an_artifact_another_replica_is_linking(
    pg_url: str, how: str
) -> None:
    """The link is written but not yet committed when the prune runs: the prune must wait for it."""
    async with replicas(pg_url, 1) as (store,):
        done, running = await new_run(store), await new_run(store)
        sha = await store.put_artifact("the same answer twice", run_id=done)
        await store.transition(done, "completed", terminal_reason="completed")
        # The linking replica's batch, stopped between its statements and its commit.
        linking = await AsyncConnection.connect(pg_url, row_factory=dict_row)
        async with linking:
            async with linking.transaction():
                if how == "linked":
                    await store._link_work(running, sha)(linking)
                else:
                    await store._artifact_work(sha, b"the same answer twice", "text/plain", running)(linking)
                pruning = asyncio.create_task(store.prune(keep_runs=0))
                await until_waiting_for_a_lock(linking, pruning)
            assert await asyncio.wait_for(pruning, GUARD_S) == 1  # the finished run goes; its answer stays
        assert await store.get_run(done) is None
        artifact = await store.get_artifact(sha)
        assert artifact is not None and artifact.content == b"the same answer twice"


async def test_an_artifact_pruned_between_a_writers_statements_is_stored_again(pg_url: str) -> None:
    async with replicas(pg_url, 1) as (store,):
        done, running = await new_run(store), await new_run(store)
        sha = await store.put_artifact("the same answer twice", run_id=done)
        await store.transition(done, "completed", terminal_reason="completed")
        linking = await AsyncConnection.connect(pg_url, row_factory=dict_row)

        class PrunedAfterTheInsert:
            """The writer's connection; a prune on another replica commits right after its first insert."""

            pruned = False

            async def execute(self, sql: str, params: object = ()) -> object:
                cursor = await linking.execute(sql, params)  # type: ignore[arg-type]
                if sql.startswith("INSERT INTO artifacts") and not self.pruned:
                    self.pruned = True
                    assert await store.prune(keep_runs=0) == 1
                return cursor

        async with linking, linking.transaction():
            await store._artifact_work(sha, b"the same answer twice", "text/plain", running)(
                PrunedAfterTheInsert()  # type: ignore[arg-type]
            )
        artifact = await store.get_artifact(sha)
        assert artifact is not None and artifact.content == b"the same answer twice"


async def test_commands_reach_the_replica_that_owns_the_run(pg_url: str) -> None:
    async with replicas(pg_url) as (a, b):
        await a.renew_lease(60, "replica a")
        run_id = await new_run(a)
        heard: list[Command] = []

        async def handle(command: Command) -> Reply:
            heard.append(command)
            if command.kind == "cancel":
                return Reply(200, {"cancelled": True})
            return Reply(409, {"error": {"message": "not waiting", "code": "run_not_waiting"}})

        a.pg_relay.serve(handle)
        big = {"output": "x" * 20_000}  # larger than a NOTIFY payload may be
        assert await b.pg_relay.send(a.owner_id, Command("cancel", run_id), within_s=10) == Reply(
            200, {"cancelled": True}
        )
        refused = await b.pg_relay.send(a.owner_id, Command("tool_result", run_id, big), within_s=10)
        assert refused.status == 409 and refused.body["error"]["code"] == "run_not_waiting"
        assert [(c.kind, c.run_id, c.body) for c in heard] == [("cancel", run_id, {}), ("tool_result", run_id, big)]
        await b.flush()
        assert PgBackend(pg_url).count("commands") == 0  # the sender removes its command once answered

        # A router that holds no lease is not asked at all; one that holds a lease but never answers is given up on.
        with pytest.raises(OwnerGone):
            await b.pg_relay.send("owner_nobody", Command("cancel", run_id), within_s=10)
        await b.renew_lease(60, "replica b")  # b serves no handler
        with pytest.raises(OwnerSilent):
            await a.pg_relay.send(b.owner_id, Command("cancel", run_id), within_s=0.5)


def test_runs_list_show_and_prune_read_the_database(pg_url: str) -> None:
    async def record() -> tuple[str, str]:
        async with replicas(pg_url, 1) as (store,):
            old, new = await new_run(store), await new_run(store)
            for run_id in (old, new):
                await store.transition(run_id, "completed", terminal_reason="completed")
            return old, new

    old, new = asyncio.run(record())
    PgBackend(pg_url).execute("UPDATE runs SET updated_at = '2000-01-01T00:00:00+00:00' WHERE run_id = ?", (old,))
    runner = CliRunner()
    listed = runner.invoke(cli, ["runs", "list", "--store", pg_url])
    assert listed.exit_code == 0 and old in listed.output and new in listed.output, listed.output
    shown = runner.invoke(cli, ["runs", "show", new, "--store", pg_url, "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)["state"] == "completed"
    pruned = runner.invoke(cli, ["runs", "prune", "--store", pg_url, "--older-than-days", "1"])
    assert pruned.exit_code == 0 and "removed 1 runs" in pruned.output, pruned.output
    assert [row[0] for row in PgBackend(pg_url).execute("SELECT run_id FROM runs")] == [new]
    gone = runner.invoke(cli, ["runs", "list", "--store", pg_url.rsplit("/", 1)[0] + "/no_such_db"])
    assert gone.exit_code == 1 and "cannot be used" in gone.output and "does not exist" in gone.output
