"""The router's background care of its run store: its lease, lapsed leases, retention, a degraded store.

    upkeep = StoreUpkeep(store, lease_s=15, retention=config.server.retention)
    await upkeep.start()     # takes the lease and expires runs whose lease lapsed, then keeps at it
    ...
    await upkeep.stop()      # gives the lease up: this router's unfinished runs are expired

Every `lease_s / 3` it renews the lease and expires the unfinished runs of routers whose lease
lapsed (killed, hung, gone), whichever router notices first; a store with a `lapse_check_s`
(PostgreSQL's) is looked at that often in between, so a dead replica's runs end within about
`lease_s + lapse_check_s`. Every `retention.prune_every_s` it prunes finished runs past the
retention, a few hundred per transaction. The renewal is a write, so it is also what finds out
that a store that could not be written can be again: until then it runs every second. The
store's health is looked at every second too, which is what notices a store file deleted while
nothing is written. Nothing here expires a run a live router owns.
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

__all__ = ["PRUNE_BATCH", "StoreUpkeep"]

log = logging.getLogger("fusionkit.store")

PRUNE_BATCH = 500  # runs removed per transaction: the write lock is never held long by a large prune
CHECK_EVERY_S = RETRY_AFTER_S / 2  # how often the store's health is looked at (and a degraded store probed)


class StoreUpkeep:
    """Holds a router's lease on its runs, expires other routers' lapsed ones, and prunes, in the background."""

    def __init__(self, store: RunStoreAPI, *, lease_s: float, retention: RetentionConfig) -> None:
        self.store = store
        self.lease_s = lease_s
        self.retention = retention
        self.holder = f"{socket.gethostname()} pid {os.getpid()}"
        self._task: asyncio.Task[None] | None = None
        self._next_prune = 0.0

    async def start(self) -> None:
        """Take the lease and expire what lapsed before serving; a store that cannot be written is retried."""
        await self._tick()
        self._task = asyncio.create_task(self._loop(), name="fusionkit-store-upkeep")

    async def stop(self) -> None:
        """Stop the loop and give the lease up (this router's unfinished runs are expired `router_stopped`)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
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
            self.store.health()
            if self.store.unavailable or time.monotonic() >= renew_at:
                await self._tick()
                renew_at = time.monotonic() + self.lease_s / 3
            elif self.store.lapse_check_s is not None and time.monotonic() >= check_at:
                await self._expire()
                check_at = time.monotonic() + self.store.lapse_check_s

    async def _tick(self) -> None:
        try:
            await self.store.renew_lease(self.lease_s, self.holder)
            await self._expire()
            if time.monotonic() >= self._next_prune:
                await self._prune()
                self._next_prune = time.monotonic() + self.retention.prune_every_s
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

    async def _prune(self) -> None:
        age, count = self.retention.max_age_days, self.retention.max_runs
        if age is None and count is None:
            return
        removed = 0
        while True:
            batch = await self.store.prune(age, keep_runs=count, limit=PRUNE_BATCH)
            removed += batch
            if batch < PRUNE_BATCH:
                break
        if removed:
            log.info("run store: pruned %d finished runs past the retention (server.retention)", removed)
