"""The router's background care of its run store: its lease, lapsed leases, retention, a degraded store.

    upkeep = StoreUpkeep(store, lease_s=15, retention=config.server.retention)
    await upkeep.start()     # takes the lease and expires runs whose lease lapsed, then keeps at it
    ...
    await upkeep.stop()      # gives the lease up: this router's unfinished runs are expired

Every `lease_s / 3` it renews the lease and expires the unfinished runs of routers whose lease
lapsed (killed, hung, gone), whichever router notices first; a store with a `lapse_check_s`
(PostgreSQL's) is looked at that often in between, so a dead replica's runs end within about
`lease_s + lapse_check_s`. Every `retention.prune_every_s` (the first time just after start) it
prunes finished runs past the retention, 500 per transaction, as a task of its own: the lease is
renewed between two batches of a large prune (each call is a job on the store's one queue), and the
router serves while a backlog is pruned. The renewal is a write, so it is also what finds out that
a store that could not be written can be again: until then it runs every second. The store's
health is looked at every second too, which is what notices a store file deleted while nothing is
written. Nothing here expires a run a live router owns; nothing that goes wrong here stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

from server.config import RetentionConfig
from server.store.errors import RETRY_AFTER_S, StoreError
from server.store.interface import RunStoreAPI

__all__ = ["PRUNE_BATCH", "StoreUpkeep", "prune_in_batches"]

log = logging.getLogger("fusionkit.store")

PRUNE_BATCH = 500  # runs removed per transaction: the write lock is never held long by a large prune
CHECK_EVERY_S = RETRY_AFTER_S / 2  # how often the store's health is looked at (and a degraded store probed)


async def prune_in_batches(store: RunStoreAPI, older_than_days: float | None, keep_runs: int | None) -> int:
    """Prune past the retention `PRUNE_BATCH` runs per transaction until done; how many runs went.

    One transaction per batch: the write lock (SQLite) is never held longer than one batch takes, so
    routers writing to the same store meanwhile wait at most that long, and a router's own lease
    renewal, queued behind a batch, goes through before the next one.
    """
    removed = 0
    while True:
        batch = await store.prune(older_than_days, keep_runs=keep_runs, limit=PRUNE_BATCH)
        removed += batch
        if batch < PRUNE_BATCH:
            return removed


class StoreUpkeep:
    """Holds a router's lease on its runs, expires other routers' lapsed ones, and prunes, in the background."""

    def __init__(self, store: RunStoreAPI, *, lease_s: float, retention: RetentionConfig) -> None:
        self.store = store
        self.lease_s = lease_s
        self.retention = retention
        self.holder = f"{socket.gethostname()} pid {os.getpid()}"
        self._task: asyncio.Task[None] | None = None
        self._pruning: asyncio.Task[None] | None = None
        self._next_prune = 0.0

    async def start(self) -> None:
        """Take the lease and expire what lapsed before serving; a store that cannot be written is retried.

        Pruning is not waited for: it starts in the background, with the loop.
        """
        await self._tick()
        self._task = asyncio.create_task(self._loop(), name="fusionkit-store-upkeep")
        self._prune_if_due()

    async def stop(self) -> None:
        """Stop the loop and give the lease up (this router's unfinished runs are expired `router_stopped`)."""
        for task in (self._task, self._pruning):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._pruning = None
        try:
            released = await self.store.release_lease()
        except StoreError as exc:
            log.warning("run store: could not give the lease up (%s); its runs expire when it lapses", exc)
            return
        if released:
            log.warning("%d unfinished runs were marked expired (router_stopped): %s", len(released), released)

    async def _loop(self) -> None:
        renew_at = time.monotonic() + self.lease_s / 3
        check_at = 0.0
        while True:
            # A look every second costs a stat(): a deleted store file is reported (logged) within a second
            # even when nothing is written, and a store that could not be written is probed until it can.
            await asyncio.sleep(CHECK_EVERY_S)
            try:
                self.store.health()
                if self.store.unavailable or time.monotonic() >= renew_at:
                    await self._tick()
                    renew_at = time.monotonic() + self.lease_s / 3
                elif self.store.lapse_check_s is not None and time.monotonic() >= check_at:
                    await self._expire()
                    check_at = time.monotonic() + self.store.lapse_check_s
                self._prune_if_due()
            except Exception:
                # Whatever it was, the lease must go on being renewed: a dead loop lets the other routers
                # expire this one's live runs.
                log.exception("run store upkeep failed; it is tried again")

    async def _tick(self) -> None:
        try:
            await self.store.renew_lease(self.lease_s, self.holder)
            await self._expire()
        except StoreError:
            pass  # the store logs an outage once, and says so in health(); the next tick tries again
        except Exception:
            log.exception("run store upkeep failed; it is tried again")

    async def _expire(self) -> None:
        try:
            expired = await self.store.expire_lapsed()
        except StoreError:
            return  # the store logs an outage once, and says so in health(); the next look tries again
        if expired:
            log.warning(
                "%d unfinished runs of routers whose lease lapsed were marked expired (lease_expired): %s",
                len(expired),
                expired,
            )

    def _prune_if_due(self) -> None:
        if self._pruning is None and time.monotonic() >= self._next_prune and not self.store.unavailable:
            self._pruning = asyncio.create_task(self._prune(), name="fusionkit-store-prune")

    async def _prune(self) -> None:
        """One prune past the retention, in batches; the next is due `prune_every_s` after it ends."""
        age, count = self.retention.max_age_days, self.retention.max_runs
        try:
            removed = await prune_in_batches(self.store, age, count)
        except StoreError:
            return  # the store logs an outage once; pruning starts again once it can be written
        except Exception:
            log.exception("run store: pruning past the retention failed; it is tried again in prune_every_s")
        else:
            if removed:
                log.info("run store: pruned %d finished runs past the retention (server.retention)", removed)
        finally:
            self._pruning = None
        self._next_prune = time.monotonic() + self.retention.prune_every_s
