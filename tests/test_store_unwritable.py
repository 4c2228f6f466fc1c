"""A run store that cannot be written, for real: a full tmpfs, a read-only directory, a deleted file.

Every write fails with StoreUnavailable (the 503 the router answers), `health()` says degraded,
reads go on where SQLite can read, and the store is writable again by itself once the cause is gone.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.store import RunStore, StoreUnavailable, new_run_id
from server.store import runstore as runstore_module
from tests.store_faults import fill, read_only, tiny_volume

REQUEST = {"model": "fusionkit/panel", "messages": [{"role": "user", "content": "hi"}]}


async def new_run(store: RunStore) -> str:
    run_id = new_run_id()
    await store.create_run(run_id, mode="panel", request=REQUEST, trace_id=None)
    return run_id


@pytest.fixture
async def volume(tmp_path: Path) -> AsyncIterator[Path]:
    with tiny_volume(tmp_path / "volume") as mounted:
        yield mounted


async def test_a_full_disk_refuses_writes_and_the_store_recovers_when_space_returns(volume: Path) -> None:
    async with RunStore(volume / "runs.sqlite3") as store:
        running = await new_run(store)
        await store.transition(running, "generating")
        filler = fill(volume)

        with pytest.raises(StoreUnavailable, match="full") as caught:
            await store.append_event(running, "candidate", {"text": "an answer " * 2000})
        assert caught.value.status == 503 and caught.value.code == "store_unavailable"
        with pytest.raises(StoreUnavailable, match="full"):
            await new_run(store)
        health = store.health()
        assert (health.status, health.error) == ("degraded", "database or disk is full")
        record = await store.get_run(running)  # reads need no space
        assert record is not None and record.state == "generating"

        filler.unlink()
        fresh = await new_run(store)
        assert store.health().status == "ok"
        record = await store.get_run(running)
        assert record is not None and (record.state, record.terminal_reason) == ("failed", "store_unavailable")
        assert [e.seq for e in await store.events(running)] == [1, 2, 3]
        assert (await store.get_run(fresh)) is not None


async def test_a_read_only_store_starts_degraded_and_recovers_once_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "store"
    async with RunStore(directory / "runs.sqlite3") as store:
        kept = await new_run(store)
    monkeypatch.setattr(runstore_module, "REOPEN_EVERY_S", 0.0)  # try the file again on every call
    with read_only(directory) as make_writable:
        store = RunStore(directory / "runs.sqlite3")  # an existing file that cannot be written: no crash
        try:
            health = store.health()
            assert health.status == "degraded" and health.error
            with pytest.raises(StoreUnavailable):
                await new_run(store)
            make_writable()
            fresh = await new_run(store)
            assert store.health().status == "ok"
            assert {r.run_id for r in await store.list_runs()} == {kept, fresh}
        finally:
            await store.close()


async def test_a_missing_parent_that_cannot_be_made_still_fails_at_start(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError):
        RunStore(blocker / "runs.sqlite3")  # a bad path is a start-up error, not a degraded store


async def test_a_deleted_store_file_is_noticed_logged_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "runs.sqlite3"
    async with RunStore(path) as store:
        before = await new_run(store)
        os.remove(path)

        for _ in range(2):
            health = store.health()
            assert health.status == "degraded" and "deleted or replaced" in (health.error or "")
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and str(path) in errors[0] and "deleted or replaced" in errors[0]

        after = await new_run(store)  # not written into the unlinked file: a new one at the same path
        assert path.exists() and store.health().status == "ok"
        assert await store.get_run(before) is None
        assert [r.run_id for r in await store.list_runs()] == [after]
    assert len([r for r in caplog.records if r.levelname == "ERROR"]) == 1
