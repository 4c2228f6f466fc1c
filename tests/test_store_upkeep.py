"""The router's background care of its store (server.store.upkeep) on a real SQLite store: a large prune
never keeps the lease from being renewed, nor the router from serving, and nothing that goes wrong in
the loop stops it (a dead loop would let other routers expire this one's live runs)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from pathlib import Path

import pytest

from server.config import RetentionConfig
from server.store import RunStore, new_run_id
from server.store import upkeep as upkeep_module
from server.store.upkeep import StoreUpkeep

REQUEST = {"model": "fusionkit/panel", "messages": [{"role": "user", "content": "hi"}]}
GUARD_S = 3  # only a hang takes this long: the old upkeep waited for the whole prune before serving


class WatchedStore(RunStore):
    """A real SQLite store that says what the upkeep asked of it, in order."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: list[str] = []
        self.renewed = asyncio.Event()
        self.pruned = asyncio.Event()
        self.expire_failures = 0
        self.expired = asyncio.Event()

    async def renew_lease(self, lease_s: float, holder: str) -> None:
        await super().renew_lease(lease_s, holder)
        self.calls.append("renew")
        self.renewed.set()

    async def prune(
        self, older_than_days: float | None = None, *, keep_runs: int | None = None, limit: int | None = None
    ) -> int:
        # Each batch waits for a renewal after the one before: it goes ahead only if the lease is renewed meanwhile.
        self.renewed.clear()
        await self.renewed.wait()
        removed = await super().prune(older_than_days, keep_runs=keep_runs, limit=limit)
        self.calls.append(f"prune {removed}")
        if limit is None or removed < limit:
            self.pruned.set()
        return removed

    async def expire_lapsed(self, reason: str = "lease_expired") -> list[str]:
        if self.expire_failures:
            self.expire_failures -= 1
            raise RuntimeError("a bug in the lapse check")
        expired = await super().expire_lapsed(reason)
        self.expired.set()
        return expired


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """The loop looks every 10 ms and prunes 2 runs per batch: a backlog of a few runs is a long prune."""
    monkeypatch.setattr(upkeep_module, "CHECK_EVERY_S", 0.01)
    monkeypatch.setattr(upkeep_module, "PRUNE_BATCH", 2)


async def finished_runs(store: RunStore, count: int) -> None:
    for _ in range(count):
        run_id = new_run_id()
        await store.create_run(run_id, mode="panel", request=REQUEST, trace_id=None)
        await store.transition(run_id, "completed", terminal_reason="completed")


async def test_the_lease_is_renewed_between_prune_batches_and_start_does_not_wait_for_the_prune(
    tmp_path: Path, quick: None
) -> None:
    store = WatchedStore(tmp_path / "runs.sqlite3")
    try:
        await finished_runs(store, 5)
        upkeep = StoreUpkeep(store, lease_s=0.03, retention=RetentionConfig(max_age_days=None, max_runs=1))
        await asyncio.wait_for(upkeep.start(), GUARD_S)
        await asyncio.wait_for(store.pruned.wait(), GUARD_S)
        await upkeep.stop()
        assert len(await store.list_runs()) == 1
        prunes = [i for i, call in enumerate(store.calls) if call.startswith("prune")]
        assert [store.calls[i] for i in prunes] == ["prune 2", "prune 2", "prune 0"]
        for before, after in itertools.pairwise(prunes):
            assert "renew" in store.calls[before + 1 : after], store.calls
    finally:
        await store.close()


async def test_an_unexpected_error_in_the_loop_is_logged_and_the_loop_goes_on(
    tmp_path: Path, quick: None, caplog: pytest.LogCaptureFixture
) -> None:
    store = WatchedStore(tmp_path / "runs.sqlite3")
    store.lapse_check_s = 0.0  # looked at between renewals, as PostgreSQL's store is
    try:
        upkeep = StoreUpkeep(store, lease_s=3600, retention=RetentionConfig(max_age_days=None, max_runs=None))
        await upkeep.start()
        with caplog.at_level(logging.ERROR, logger="fusionkit.store"):
            # The loop's own look at lapsed leases fails twice; the third look succeeds: the loop went on.
            store.expire_failures = 2
            store.expired.clear()
            await asyncio.wait_for(store.expired.wait(), GUARD_S)
        failures = [r for r in caplog.records if "upkeep failed" in r.getMessage()]
        assert len(failures) == 2 and failures[0].exc_info is not None
        await upkeep.stop()  # and stops cleanly, raising nothing
    finally:
        await store.close()
