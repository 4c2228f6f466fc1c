"""An endpoint whose calls wait until the test lets them go, so a test knows a run is mid-flight.

hold = Hold()
clients = build_clients(config)
hold.endpoint(clients["slow"])          # its calls now wait for hold.release()
... start requests ...
hold.wait_for_calls(3)                  # three runs are waiting on that member
hold.release()
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

from bridge.adapters import CallContext, ChatAdapter
from bridge.protocol import ChatCompletion, ChatCompletionChunk, ChatRequest
from server.clients import EndpointClient

__all__ = ["Hold"]


class Hold:
    """Counts the calls that arrived and keeps them waiting until `release()`; works across threads."""

    def __init__(self) -> None:
        self._released = threading.Event()
        self._arrived = threading.Semaphore(0)

    def endpoint(self, client: EndpointClient) -> None:
        client.adapter = _HeldAdapter(client.adapter, self)

    def wait_for_calls(self, count: int, timeout_s: float = 60) -> None:
        for _ in range(count):
            if not self._arrived.acquire(timeout=timeout_s):
                raise AssertionError(f"fewer than {count} calls arrived")

    def release(self) -> None:
        self._released.set()

    async def _enter(self) -> None:
        self._arrived.release()
        await asyncio.to_thread(self._released.wait, 120)


class _HeldAdapter:
    def __init__(self, inner: ChatAdapter, hold: Hold) -> None:
        self.inner = inner
        self.hold = hold
        self.provider = inner.provider
        self.model = inner.model

    async def complete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        await self.hold._enter()
        return await self.inner.complete(request, ctx)

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatCompletionChunk]:
        await self.hold._enter()
        async for chunk in self.inner.stream(request, ctx):
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()
