"""How the router reaches its endpoints: one client per endpoint, with retries and deadlines.

An endpoint is reached either in-process, through the provider adapter a bridge would use (when
`fusionkit serve` runs without bridges), or through its bridge with `BridgeClient` (under
`fusionkit up`), so an upstream's quirks, errors and keys are handled by one piece of code
whichever way the router runs. Under `up` the bridge's address comes from the bridges file,
followed as it changes (`PublishedBridge`): the router starts while its bridges do, and calls
one only once `up` has published it. Either way the engine sees an
`EndpointClient`, which adds what a fan-out needs: a per-call timeout, retries on 429/5xx that
honour `Retry-After` without outliving the run's deadline, and a readiness probe.

The run's deadline itself is the engine's to enforce (`budget.wall_clock_s` cancels the whole
run): a call is not cut short by it here, or whichever of two timers fired first would decide
whether the run times out (504) or goes on without that call.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Mapping

import aiohttp

from bridge.adapters import CallContext, ChatAdapter, make_adapter
from bridge.endpoint import EndpointConfig
from bridge.errors import APIError, not_ready, stream_cut_short, timed_out
from bridge.protocol import ChatCompletion, ChatCompletionChunk, ChatRequest
from server.bridge_client import BridgeClient
from server.bridges_file import BridgesFile
from server.config import PanelConfig

__all__ = ["EndpointClient", "PublishedBridge", "build_clients"]

log = logging.getLogger("fusionkit.router")
MAX_ATTEMPTS = 3
RETRY_BASE_S = 0.2


def _retryable(error: APIError) -> bool:
    return error.status == 429 or (error.status >= 500 and error.status != 504)


def _retry_delay(error: APIError, attempt: int) -> float:
    if error.retry_after:
        try:
            return max(float(error.retry_after), 0.0)
        except ValueError:
            pass
    return RETRY_BASE_S * (2**attempt) * (0.5 + random.random() / 2)


class PublishedBridge:
    """An endpoint's bridge at the address the bridges file gives now (a `ChatAdapter`).

    bridge = PublishedBridge(endpoint, BridgesFile(path, ids), key)
    bridge.url                             # None until `fusionkit up` published the bridge
    await bridge.complete(request, ctx)    # 503 not_ready until then (the engine retries 5xx)
    """

    def __init__(self, endpoint: EndpointConfig, bridges: BridgesFile, key: str | None) -> None:
        self.provider: str = endpoint.provider
        self.model = endpoint.id
        self._endpoint = endpoint
        self._bridges = bridges
        self._key = key
        self._client: BridgeClient | None = None
        self._retired: list[BridgeClient] = []  # clients of an address the file no longer gives

    @property
    def url(self) -> str | None:
        return self._bridges.url(self._endpoint.id)

    def _current(self) -> BridgeClient:
        url = self.url
        if url is None:
            raise not_ready(f"the bridge for '{self.model}' is still starting; fusionkit up has not published it yet")
        if self._client is None or self._client.base_url != f"{url}/v1":
            if self._client is not None:
                self._retired.append(self._client)  # calls under way on it finish there
            self._client = BridgeClient(
                f"{url}/v1", model=self.model, timeout_s=self._endpoint.timeout_s, api_key=self._key
            )
        return self._client

    async def complete(self, request: ChatRequest, ctx: CallContext) -> ChatCompletion:
        return await self._current().complete(request, ctx)

    async def stream(self, request: ChatRequest, ctx: CallContext) -> AsyncIterator[ChatCompletionChunk]:
        async for chunk in self._current().stream(request, ctx):
            yield chunk

    async def aclose(self) -> None:
        clients = [*self._retired, *([self._client] if self._client is not None else [])]
        await asyncio.gather(*(client.aclose() for client in clients))


class EndpointClient:
    """One endpoint as the engine sees it.

    client = EndpointClient(endpoint, adapter)
    completion = await client.complete(request, ctx, deadline=time.monotonic() + 30)
    """

    def __init__(self, endpoint: EndpointConfig, adapter: ChatAdapter, *, bridge_url: str | None = None) -> None:
        self.endpoint = endpoint
        self.adapter = adapter
        self._bridge_url = bridge_url
        # aiohttp, as BridgeClient: the router then imports no second HTTP client library at start.
        self._probe: aiohttp.ClientSession | None = None
        # Told of each retry: this endpoint's id and the status that caused it (the router's metrics).
        self.on_retry: Callable[[str, int], None] | None = None

    @property
    def via_bridge(self) -> bool:
        return self._bridge_url is not None or isinstance(self.adapter, PublishedBridge)

    @property
    def bridge_url(self) -> str | None:
        """The bridge's URL now (None for an in-process endpoint, or a bridge not published yet)."""
        return self.adapter.url if isinstance(self.adapter, PublishedBridge) else self._bridge_url

    @property
    def id(self) -> str:
        return self.endpoint.id

    async def complete(
        self, request: ChatRequest, ctx: CallContext, *, deadline: float | None = None
    ) -> ChatCompletion:
        for attempt in range(MAX_ATTEMPTS):
            try:
                async with asyncio.timeout(self.endpoint.timeout_s):
                    return await self.adapter.complete(request, ctx)
            except TimeoutError:
                raise timed_out(f"endpoint {self.id} did not answer within its timeout") from None
            except APIError as error:
                await self._wait_before_retry(error, attempt, deadline)
        raise AssertionError("unreachable")

    async def stream(
        self, request: ChatRequest, ctx: CallContext, *, deadline: float | None = None
    ) -> AsyncIterator[ChatCompletionChunk]:
        """Stream a call; retried like `complete` only until the first chunk arrived."""
        for attempt in range(MAX_ATTEMPTS):
            started = finished = False
            try:
                async with asyncio.timeout(self.endpoint.timeout_s):
                    async for chunk in self.adapter.stream(request, ctx):
                        started = True
                        finished = finished or any(c.finish_reason for c in chunk.choices)
                        yield chunk
                if not finished:
                    # Worded as a bridge words it, so a client cannot tell in-process from bridged.
                    raise stream_cut_short()
                return
            except TimeoutError:
                raise timed_out(f"endpoint {self.id} did not finish within its timeout") from None
            except APIError as error:
                if started:
                    raise
                await self._wait_before_retry(error, attempt, deadline)

    async def _wait_before_retry(self, error: APIError, attempt: int, deadline: float | None) -> None:
        if not _retryable(error) or attempt + 1 >= MAX_ATTEMPTS:
            raise error
        delay = _retry_delay(error, attempt)
        if deadline is not None and time.monotonic() + delay >= deadline:
            raise error
        log.info("endpoint %s answered %s; retrying in %.2fs", self.id, error.status, delay)
        if self.on_retry is not None:
            self.on_retry(self.id, error.status)
        await asyncio.sleep(delay)

    async def ready(self) -> dict[str, object]:
        """Readiness from a live probe: a bridge's /health, or an in-process adapter (always ready).

        A bridge `fusionkit up` has not published yet is not ready, and is not probed: the port it
        was given may still turn out to be someone else's.
        """
        if not self.via_bridge:
            return {"ready": True, "via": "in-process", "provider": self.endpoint.provider}
        url = self.bridge_url
        if url is None:
            return {"ready": False, "via": "bridge", "state": "starting", "provider": self.endpoint.provider}
        if self._probe is None:
            self._probe = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0))
        try:
            async with self._probe.get(f"{url}/health") as response:
                ok = response.status == 200
            return {"ready": ok, "via": "bridge", "url": url, "provider": self.endpoint.provider}
        except (aiohttp.ClientError, TimeoutError) as exc:
            return {"ready": False, "via": "bridge", "url": url, "error": type(exc).__name__}

    async def aclose(self) -> None:
        await self.adapter.aclose()
        if self._probe is not None:
            await self._probe.close()


def build_clients(
    config: PanelConfig, bridges: Mapping[str, str] | BridgesFile | None = None, *, bridge_key: str | None = None
) -> dict[str, EndpointClient]:
    """A client per endpoint: to its bridge when `bridges` names one (sending `bridge_key` as its bearer
    token), else the in-process provider adapter. A `BridgesFile` is followed as it changes."""
    clients: dict[str, EndpointClient] = {}
    for endpoint in config.endpoints:
        adapter: ChatAdapter
        url = None
        if isinstance(bridges, BridgesFile) and endpoint.id in bridges.ids:
            adapter = PublishedBridge(endpoint, bridges, bridge_key)
        elif isinstance(bridges, Mapping) and endpoint.id in bridges:
            url = bridges[endpoint.id].rstrip("/")
            adapter = BridgeClient(f"{url}/v1", model=endpoint.id, timeout_s=endpoint.timeout_s, api_key=bridge_key)
        else:
            # aiohttp, not the openai SDK's httpx: the router's hot path (openai_transport.py says why).
            adapter = make_adapter(endpoint, openai_transport="aiohttp")
        clients[endpoint.id] = EndpointClient(endpoint, adapter, bridge_url=url)
    return clients
