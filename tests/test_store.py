"""The run store (SPEC §7), each test on both backends (a real SQLite file, a real PostgreSQL database):
events and their seqs under concurrency, idempotency, artifacts, final terminal states, leases and the
expiry of lapsed ones, pruning by age and count, a store that cannot be written, and a writer killed
mid-transaction. SQLite's schema and migrations are tested here too; PostgreSQL's in test_pg_store.py."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from server.store import (
    SCHEMA_VERSION,
    TERMINAL_STATES,
    DuplicateRun,
    IdempotencyConflict,
    RunFinished,
    RunStore,
    RunStoreAPI,
    SchemaTooNew,
    StoreClosed,
    StoreUnavailable,
    UnknownArtifact,
    UnknownRun,
    is_valid_run_id,
    new_run_id,
)
from server.store.pgstore import PgRunStore
from server.store.schema import MIGRATIONS, migrate
from tests.store_backends import Backend, PgBackend, SqliteBackend

REPO = Path(__file__).resolve().parents[1]
LONG_AGO = "2000-01-01T00:00:00.000+00:00"
REQUEST = {"model": "fusionkit/panel", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return SqliteBackend(tmp_path / "runs.sqlite3")
    return PgBackend(request.getfixturevalue("pg_url"))


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[RunStoreAPI]:
    async with backend.open() as opened:
        yield opened


def raw(path: Path) -> sqlite3.Connection:
    """A second, plain connection to the file: what another process (or a forensic look) would see."""
    conn = sqlite3.connect(path, timeout=5)
    conn.row_factory = sqlite3.Row
    return conn


async def new_run(store: RunStoreAPI, **fields: Any) -> str:
    run_id = new_run_id()
    await store.create_run(run_id, mode="panel", request=REQUEST, trace_id="trace-1", **fields)
    return run_id


async def test_schema_is_created_in_a_new_directory_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "not" / "yet" / "runs.sqlite3"
    async with RunStore(path):
        pass
    with raw(path) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_version ORDER BY version")]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    assert {"schema_version", "runs", "events", "artifacts", "run_artifacts"} <= tables


async def test_an_older_schema_is_migrated_and_keeps_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, str(path), MIGRATIONS[:1])
    conn.execute(
        "INSERT INTO runs (run_id, created_at, updated_at, state, request_json) VALUES (?, ?, ?, 'completed', '{}')",
        ("run_" + "a" * 24, LONG_AGO, LONG_AGO),
    )
    conn.close()
    async with RunStore(path) as store:
        old = await store.get_run("run_" + "a" * 24)
    assert old is not None and old.state == "completed"
    with raw(path) as check:
        assert check.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {r[0] for r in check.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"runs_state", "run_artifacts_sha256"} <= indexes


async def test_a_schema_from_a_newer_fusionkit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    async with RunStore(path):
        pass
    with raw(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (?, ?)", (SCHEMA_VERSION + 1, LONG_AGO))
    with pytest.raises(SchemaTooNew, match=f"version {SCHEMA_VERSION + 1}"):
        RunStore(path)


async def test_reopening_keeps_runs_events_and_artifacts(backend: Backend) -> None:
    odd = {"messages": [{"role": "user", "content": "caf\u00e9 \ud800 lone surrogate"}]}  # valid JSON, not UTF-8
    async with backend.open() as store:
        run_id = await new_run(store)
        odd_id = new_run_id()
        await store.create_run(odd_id, mode="single", request=odd, trace_id=None)
        await store.append_event(run_id, "model_call.started", {"endpoint_id": "fast"})
        sha = await store.put_artifact("a candidate", run_id=run_id)
    async with backend.open() as again:
        record = await again.get_run(run_id)
        odd_record = await again.get_run(odd_id)
        events = await again.events(run_id)
        artifact = await again.get_artifact(sha)
    assert record is not None and record.request == REQUEST and record.trace_id == "trace-1"
    assert [(e.seq, e.type) for e in events] == [(1, "run.created"), (2, "model_call.started")]
    assert artifact is not None and artifact.text() == "a candidate"
    assert odd_record is not None and odd_record.request == odd


async def test_create_append_and_transition(store: RunStoreAPI) -> None:
    run_id = new_run_id()
    created = await store.create_run(run_id, mode="panel", request=REQUEST, trace_id="t", request_hash="h1")
    assert (created.state, created.mode, created.request_hash, created.summary) == ("queued", "panel", "h1", {})
    assert await store.append_event(run_id, "model_call.started", {"endpoint_id": "fast"}) == 2
    assert await store.transition(run_id, "generating", summary_update={"models": ["fast"]}) == 3
    seq = await store.transition(
        run_id, "completed", payload={"decision": "select"}, summary_update={"latency_ms": 12}, terminal_reason="done"
    )
    assert seq == 4
    record = await store.get_run(run_id)
    assert record is not None and record.finished
    assert (record.state, record.terminal_reason) == ("completed", "done")
    assert record.summary == {"models": ["fast"], "latency_ms": 12}
    assert record.updated_at >= record.created_at
    events = await store.events(run_id)
    assert [(e.seq, e.type) for e in events] == [
        (1, "run.created"),
        (2, "model_call.started"),
        (3, "run.state"),
        (4, "run.state"),
    ]
    assert events[0].payload == {"state": "queued", "mode": "panel"}
    assert events[3].payload == {"state": "completed", "decision": "select"}
    assert [e.seq for e in await store.events(run_id, after=1, limit=2)] == [2, 3]


async def test_bad_input_is_refused_by_name(store: RunStoreAPI) -> None:
    run_id = await new_run(store)
    with pytest.raises(DuplicateRun):
        await store.create_run(run_id, mode="panel", request=REQUEST, trace_id=None)
    with pytest.raises(ValueError, match="not a run id"):
        await store.create_run("../../etc/passwd", mode="panel", request=REQUEST, trace_id=None)
    with pytest.raises(ValueError, match="unknown run state"):
        await store.transition(run_id, "finished")
    missing = new_run_id()
    with pytest.raises(UnknownRun):
        await store.append_event(missing, "x", {})
    with pytest.raises(UnknownRun):
        await store.transition(missing, "failed")
    assert await store.get_run(missing) is None
    assert await store.events(missing) == []


def test_run_ids_have_one_strict_shape() -> None:
    run_id = new_run_id()
    assert is_valid_run_id(run_id) and run_id != new_run_id()
    for bad in ("run_" + "a" * 23, "run_" + "A" * 24, run_id + "\n", "../" + run_id, run_id[4:], None, 7):
        assert not is_valid_run_id(bad), bad


async def test_concurrent_appenders_never_lose_or_duplicate_a_seq(store: RunStoreAPI) -> None:
    run_ids = [await new_run(store) for _ in range(20)]

    async def appender(run_id: str, n: int) -> list[int]:
        return [await store.append_event(run_id, "tick", {"appender": n, "i": i}) for i in range(3)]

    results = await asyncio.gather(*(appender(run_ids[n % 20], n) for n in range(200)))
    returned: dict[str, list[int]] = {run_id: [] for run_id in run_ids}
    for n, seqs in enumerate(results):
        returned[run_ids[n % 20]].extend(seqs)
    for run_id in run_ids:
        stored = [e.seq for e in await store.events(run_id, limit=1000)]
        assert stored == list(range(1, 32))  # run.created, then 10 appenders x 3 events
        assert sorted(returned[run_id]) == list(range(2, 32))


async def test_idempotency_keys_find_their_run_and_conflict_on_reuse(store: RunStoreAPI) -> None:
    first = await new_run(store, idempotency_key="key-1", request_hash="body-a")
    found = await store.find_by_idempotency_key("key-1")
    assert found is not None and (found.run_id, found.request_hash) == (first, "body-a")
    assert await store.find_by_idempotency_key("key-2") is None
    with pytest.raises(IdempotencyConflict) as caught:
        await new_run(store, idempotency_key="key-1", request_hash="body-b")
    assert caught.value.run_id == first
    assert len(await store.list_runs()) == 1
    await new_run(store)  # runs without a key never conflict with each other
    await new_run(store)
    assert len(await store.list_runs()) == 3


async def test_artifacts_are_stored_once_by_content_hash(backend: Backend, store: RunStoreAPI) -> None:
    run_id = await new_run(store)
    sha = await store.put_artifact("same text", run_id=run_id)
    assert sha == hashlib.sha256(b"same text").hexdigest()
    assert await store.put_artifact(b"same text", "application/json") == sha
    artifact = await store.get_artifact(sha)
    assert artifact is not None
    assert (artifact.content, artifact.size, artifact.media_type) == (b"same text", 9, "text/plain")
    assert backend.count("artifacts") == 1
    assert await store.get_artifact("0" * 64) is None
    with pytest.raises(UnknownArtifact):
        await store.link_artifact(run_id, "0" * 64)
    with pytest.raises(UnknownRun):
        await store.put_artifact("orphan", run_id=new_run_id())
    assert backend.count("artifacts") == 1  # the refused put left nothing behind


async def test_list_runs_pages_newest_first(store: RunStoreAPI) -> None:
    made = [await new_run(store) for _ in range(5)]
    page = await store.list_runs(limit=2)
    assert [r.run_id for r in page] == made[:2:-1]
    following = await store.list_runs(limit=2, before=page[-1].run_id)
    assert [r.run_id for r in following] == made[2:0:-1]
    assert [r.run_id for r in await store.list_runs(limit=10, before=following[-1].run_id)] == made[:1]
    assert await store.list_runs(before=new_run_id()) == []


async def runs_in_every_state(store: RunStoreAPI) -> dict[str, str]:
    """One run of `store` in each of queued, generating, requires_action and the terminal states."""
    runs: dict[str, str] = {}
    for state in ("queued", "generating", "requires_action", "completed", "failed", "cancelled", "expired"):
        runs[state] = await new_run(store)
        if state != "queued":
            await store.transition(runs[state], state, terminal_reason=state if state in TERMINAL_STATES else None)
    return runs


async def test_a_finished_run_is_final(store: RunStoreAPI, caplog: pytest.LogCaptureFixture) -> None:
    runs = await runs_in_every_state(store)
    for state in sorted(TERMINAL_STATES):
        run_id = runs[state]
        before = await store.events(run_id)
        for later in ("generating", "judging", "completed", "failed", "expired"):
            with pytest.raises(RunFinished, match=f"has ended \\({state}\\)"):
                await store.transition(run_id, later, terminal_reason=later)
        with pytest.raises(RunFinished):
            await store.append_event(run_id, "model_call.completed", {})
        store.record_event(run_id, len(before) + 1, "late", {})
        record = await store.get_run(run_id)
        assert record is not None and (record.state, record.terminal_reason) == (state, state)
        assert await store.events(run_id) == before
    refused = [r.getMessage() for r in caplog.records if r.name == "fusionkit.store"]
    assert len(refused) == 4 and all("was not recorded: RunFinished" in line for line in refused)
    # Runs that have not ended move on as before.
    assert await store.transition(runs["requires_action"], "generating") == 3


async def test_a_live_lease_keeps_its_runs_and_a_lapsed_one_has_them_expired(
    backend: Backend, store: RunStoreAPI
) -> None:
    other = backend.open()  # a second router on the same store
    try:
        await store.renew_lease(60, "host-a pid 1")
        mine = await runs_in_every_state(store)
        theirs = await new_run(other)  # `other` never took a lease: nobody keeps its run alive
        before = {s: await store.events(r) for s, r in mine.items()}

        # Neither router expires the runs of a live lease, nor its own.
        assert await other.expire_lapsed() == []
        assert await store.expire_lapsed() == [theirs]
        for state, run_id in mine.items():
            assert await store.events(run_id) == before[state]

        # The lease lapses (the router was killed or hangs): whichever router looks next expires its runs.
        backend.execute("UPDATE leases SET expires_at = ? WHERE owner_id = ?", (LONG_AGO, store.owner_id))
        lapsed = await other.expire_lapsed()
        assert sorted(lapsed) == sorted(mine[s] for s in ("queued", "generating", "requires_action"))
        for state, run_id in mine.items():
            record = await other.get_run(run_id)
            events = await other.events(run_id)
            assert record is not None and record.owner_id == store.owner_id
            if state in TERMINAL_STATES:
                assert (record.state, record.terminal_reason, events) == (state, state, before[state])
            else:
                assert (record.state, record.terminal_reason) == ("expired", "lease_expired")
                assert events[:-1] == before[state]
                assert (events[-1].seq, events[-1].type) == (len(before[state]) + 1, "run.expired")
                assert events[-1].payload == {"state": "expired", "reason": "lease_expired"}
        assert backend.count("leases") == 0  # the lapsed lease is gone
        assert await other.expire_lapsed() == []

        # Renewing takes the lease again; a released lease expires what its router leaves unfinished.
        await store.renew_lease(60, "host-a pid 1")
        running = await new_run(store)
        assert await other.expire_lapsed() == []
        assert await store.release_lease() == [running]
        record = await store.get_run(running)
        assert record is not None and (record.state, record.terminal_reason) == ("expired", "router_stopped")
    finally:
        await other.close()


async def test_unfinished_runs_from_before_leases_are_expired_by_the_first_router(tmp_path: Path) -> None:
    path, run_id = tmp_path / "runs.sqlite3", "run_" + "b" * 24
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, str(path), MIGRATIONS[:2])
    conn.execute(
        "INSERT INTO runs (run_id, created_at, updated_at, state, request_json) VALUES (?, ?, ?, 'judging', '{}')",
        (run_id, LONG_AGO, LONG_AGO),
    )
    conn.execute("INSERT INTO events VALUES (?, 1, ?, 'run.created', '{}')", (run_id, LONG_AGO))
    conn.close()
    async with RunStore(path) as store:
        assert await store.expire_lapsed() == [run_id]
        record = await store.get_run(run_id)
    assert record is not None and (record.owner_id, record.state) == (None, "expired")


async def test_prune_removes_old_finished_runs_and_the_artifacts_only_they_used(
    backend: Backend, store: RunStoreAPI
) -> None:
    old_done, new_done, old_running = await new_run(store), await new_run(store), await new_run(store)
    for run_id in (old_done, new_done):
        await store.transition(run_id, "completed")
    await store.transition(old_running, "generating")
    only_old = await store.put_artifact("only the old run", run_id=old_done)
    shared = await store.put_artifact("shared", run_id=old_done)
    await store.link_artifact(new_done, shared)
    running = await store.put_artifact("the unfinished run's", run_id=old_running)
    stray_old = await store.put_artifact("never linked, long ago")
    stray_new = await store.put_artifact("never linked, just now")
    backend.execute("UPDATE runs SET updated_at = ? WHERE run_id IN (?, ?)", (LONG_AGO, old_done, old_running))
    backend.execute("UPDATE artifacts SET created_at = ? WHERE sha256 = ?", (LONG_AGO, stray_old))

    assert await store.prune(older_than_days=1) == 1
    assert await store.get_run(old_done) is None and await store.events(old_done) == []
    assert await store.get_run(new_done) is not None and await store.get_run(old_running) is not None
    kept = {sha: await store.get_artifact(sha) is not None for sha in (only_old, shared, running, stray_old, stray_new)}
    assert kept == {only_old: False, shared: True, running: True, stray_old: False, stray_new: True}
    assert backend.count("run_artifacts", "run_id = ?", (old_done,)) == 0
    assert await store.prune(older_than_days=1) == 0


async def test_prune_by_count_keeps_the_newest_finished_runs_a_batch_at_a_time(store: RunStoreAPI) -> None:
    done = [await new_run(store) for _ in range(7)]
    for run_id in done:
        await store.transition(run_id, "completed", terminal_reason="completed")
    running = await new_run(store)
    await store.put_artifact("the oldest run's", run_id=done[0])

    assert await store.prune(keep_runs=3, limit=2) == 2  # at most `limit` per call: the caller repeats
    assert await store.prune(keep_runs=3, limit=2) == 2
    assert await store.prune(keep_runs=3, limit=2) == 0
    left = {r.run_id for r in await store.list_runs(limit=100)}
    assert left == {*done[-3:], running}  # unfinished runs are never pruned, nor counted
    assert await store.get_artifact(hashlib.sha256(b"the oldest run's").hexdigest()) is None
    assert await store.prune() == 0  # no limit given: nothing to do


async def test_queued_writes_keep_their_order_and_reads_see_them(store: RunStoreAPI) -> None:
    run_id = await new_run(store)
    payload = {"i": 0}
    store.record_event(run_id, 2, "model_call.started", payload)
    payload["i"] = 99  # recorded as it was when queued, not as it is when written
    sha = store.record_artifact("candidate text", "text/plain", run_id)
    store.record_transition(run_id, 3, "judging", {"candidates": 1})
    store.record_event(run_id, 4, "judge.completed", {"artifact_sha256": sha})
    # Nothing awaited yet: this read queues behind the writes and sees every one of them.
    events = await store.events(run_id)
    assert [(e.seq, e.type) for e in events] == [
        (1, "run.created"),
        (2, "model_call.started"),
        (3, "run.state"),
        (4, "judge.completed"),
    ]
    assert events[1].payload == {"i": 0}
    assert events[2].payload == {"state": "judging", "candidates": 1}
    record = await store.get_run(run_id)
    artifact = await store.get_artifact(sha)
    assert record is not None and record.state == "judging"
    assert artifact is not None and artifact.content == b"candidate text"


async def test_a_failing_queued_write_undoes_only_itself_and_is_logged(
    store: RunStoreAPI, caplog: pytest.LogCaptureFixture
) -> None:
    run_id, stranger = await new_run(store), new_run_id()
    # Queued in one turn of the event loop, so written as one batch in one transaction.
    store.record_event(run_id, 2, "first", {})
    store.record_event(stranger, 2, "lost", {})  # no such run
    store.record_event(run_id, 2, "duplicate", {})  # seq 2 is taken by then
    store.record_transition(run_id, 3, "judging")
    store.record_transition(run_id, 3, "cancelled")  # its state change goes with its refused event
    awaited = store.append_event(stranger, "awaited", {})
    with pytest.raises(UnknownRun):
        await awaited
    assert [(e.seq, e.type) for e in await store.events(run_id)] == [(1, "run.created"), (2, "first"), (3, "run.state")]
    record = await store.get_run(run_id)
    assert record is not None and record.state == "judging"
    logged = [r.getMessage() for r in caplog.records if r.name == "fusionkit.store"]
    assert len(logged) == 3, logged
    assert f"event 2 of {stranger} was not recorded: UnknownRun" in logged[0]
    taken = "UniqueViolation" if isinstance(store, PgRunStore) else "IntegrityError"  # seq 2 and 3 are taken
    assert f"event 2 of {run_id} was not recorded: {taken}" in logged[1]
    assert f"state 'cancelled' (event 3) of {run_id} was not recorded: {taken}" in logged[2]


async def test_a_batch_that_cannot_begin_fails_every_caller_and_the_store_goes_on(
    tmp_path: Path, backend: Backend, store: RunStoreAPI
) -> None:
    run_id = await new_run(store)
    # Another process holds the write lock for longer than the store waits for it (shortened from 5 s here).
    await backend.shorten_lock_wait(store)
    with backend.write_lock():
        # One batch: every caller in it is told the store is unavailable, not only the first.
        artifact = asyncio.ensure_future(store.put_artifact("not for a run"))
        with pytest.raises(StoreUnavailable, match=backend.lock_error) as caught:
            await asyncio.wait_for(store.create_run(new_run_id(), mode="panel", request={}, trace_id=None), 10)
        with pytest.raises(StoreUnavailable):
            await artifact
        assert store.health().status == "degraded" and backend.lock_error in (store.health().error or "")
    assert (caught.value.status, caught.value.code, caught.value.headers()["Retry-After"]) == (
        503,
        "store_unavailable",
        "2",
    )
    assert str(tmp_path) not in caught.value.message and "127.0.0.1" not in caught.value.message  # nor where
    assert await store.append_event(run_id, "after", {}) == 2
    assert store.health().status == "ok"
    record = await store.get_run(run_id)
    assert record is not None and record.state == "queued" and len(await store.list_runs()) == 1


async def test_a_run_that_loses_writes_is_recorded_failed_once_the_store_can_be_written(
    backend: Backend, store: RunStoreAPI, caplog: pytest.LogCaptureFixture
) -> None:
    run_id, bystander = await new_run(store), await new_run(store)
    await store.transition(run_id, "generating")
    told: list[str] = []
    await backend.shorten_lock_wait(store)
    with backend.write_lock():  # another process holds the write lock for longer than the store waits
        store.record_event(run_id, 3, "model_call.completed", {}, lost=lambda: told.append("event 3"))
        with pytest.raises(StoreUnavailable, match=backend.lock_error):
            await store.transition(
                run_id, "completed", seq=4, terminal_reason="completed", lost=lambda: told.append("end")
            )
        # A later write of the same run is not even tried: it would leave a hole where event 3 should be.
        store.record_event(run_id, 5, "late", {}, lost=lambda: told.append("event 5"))
        current = await store.get_run(run_id)  # reads go on
        assert current is not None and current.state == "generating"
        health = store.health()
        assert (health.status, health.lost_writes) == ("degraded", 3)

    # The first write that succeeds, whoever makes it, finds the store writable again and fails the run.
    await store.append_event(bystander, "model_call.started", {})
    record = await store.get_run(run_id)
    events = await store.events(run_id)
    assert told == ["event 3", "end", "event 5"]
    assert record is not None and (record.state, record.terminal_reason) == ("failed", "store_unavailable")
    assert record.summary["error"]["code"] == "store_unavailable"
    assert [(e.seq, e.type, e.payload.get("state")) for e in events] == [
        (1, "run.created", "queued"),
        (2, "run.state", "generating"),
        (3, "run.state", "failed"),  # no gap where the lost writes were
    ]
    assert store.health().status == "ok"
    logged = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "fusionkit.store"]
    assert [level for level, _ in logged] == ["ERROR", "WARNING", "WARNING"], logged  # one line per outage
    assert f"cannot be used: {backend.lock_error}" in logged[0][1]
    assert "can be written again" in logged[1][1] and "3 writes were lost" in logged[1][1]
    assert f"recorded as failed (store_unavailable): {run_id}" in logged[2][1]


async def test_closing_writes_what_was_queued_and_a_cancelled_caller_does_not_undo_its_write(
    backend: Backend,
) -> None:
    store = backend.open()
    run_id = await new_run(store)
    hold = backend.holder()  # runs in the batch, right after the transition

    store.record_event(run_id, 2, "queued", {})
    cancelled = asyncio.ensure_future(store.transition(run_id, "completed", terminal_reason="completed"))
    held = asyncio.ensure_future(store._reading(hold.work))  # type: ignore[attr-defined]
    # The transition is written, its transaction not yet committed, when its caller gives up.
    await hold.started()
    cancelled.cancel()
    hold.release()
    await held
    await store.close()
    with pytest.raises(StoreClosed):
        store.record_event(run_id, 4, "too late", {})
    async with backend.open() as reopened:
        record = await reopened.get_run(run_id)
        assert [e.type for e in await reopened.events(run_id)] == ["run.created", "queued", "run.state"]
    assert cancelled.cancelled()
    assert record is not None and record.state == "completed"


async def test_a_closed_store_says_so(backend: Backend) -> None:
    store = backend.open()
    await store.close()
    await store.close()
    with pytest.raises(StoreClosed):
        await store.list_runs()


CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, os, sys
    from server.store import open_store

    class Exploder:
        # json.dumps(default=str) calls this inside the transaction, after the batch's first writes.
        def __str__(self):
            os._exit(1)

    async def main(path, run_id):
        store = open_store(path)
        await store.create_run(run_id, mode="panel", request={"messages": []}, trace_id="t")
        await store.transition(run_id, "generating")
        for i in range(5):
            await store.append_event(run_id, "model_call.started", {"i": i})
        # One batch: two queued events are written, then the summary's encoding kills the process.
        store.record_event(run_id, 8, "model_call.completed", {"i": 0})
        store.record_event(run_id, 9, "model_call.completed", {"i": 1})
        await store.transition(run_id, "judging", summary_update={"boom": Exploder()})

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_a_writer_killed_mid_transaction_leaves_a_consistent_store(backend: Backend) -> None:
    run_id = new_run_id()
    writer = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_WRITER, backend.location, run_id, cwd=REPO, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(writer.communicate(), timeout=60)
    assert writer.returncode == 1, stderr.decode()
    async with backend.open() as store:
        if isinstance(backend, SqliteBackend):
            assert backend.execute("PRAGMA integrity_check")[0][0] == "ok"
        record = await store.get_run(run_id)
        # The half-done batch left nothing: neither the queued events nor the transition's state and event.
        assert record is not None and record.state == "generating"
        assert [e.seq for e in await store.events(run_id)] == list(range(1, 8))
        assert await store.expire_lapsed() == [run_id]  # the dead writer held no lease
        record = await store.get_run(run_id)
        events = await store.events(run_id)
    assert record is not None and (record.state, record.terminal_reason) == ("expired", "lease_expired")
    assert (events[-1].seq, events[-1].type) == (8, "run.expired")
