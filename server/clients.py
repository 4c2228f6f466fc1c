"""How the router reaches its endpoints: one client per endpoint, with retries and deadlines.

An endpoint is reached either in-process, through the provider adapter a bridge would use (when
`fusionkit serve` runs without bridges), or through its bridge with `BridgeClient` (under
`fusionkit up`), so an upstream's quirks, errors and keys are handled by one piece of code
whichever way the router runs. Either way the engine sees an
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

import httpx2

from bridge.adapters import CallContext, ChatAdapter, make_adapter
from bridge.endpoint import EndpointConfig
from bridge.errors import APIError, timed_out
from bridge.protocol import ChatCompletion, ChatCompletionChunk, ChatRequest
from server.bridge_client import BridgeClient
from server.config import PanelConfig

__all__ = ["EndpointClient", "build_clients"]

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


class EndpointClient:
    """One endpoint as the engine sees it.

    client = EndpointClient(endpoint, adapter)
    completion = await client.complete(request, ctx, deadline=time.monotonic() + 30)
    """

    def __init__(self, endpoint: EndpointConfig, adapter: ChatAdapter, *, bridge_url: str | None = None) -> None:
        self.endpoint = endpoint
        self.adapter = adapter
        self.bridge_url = bridge_url
        self._probe: httpx2.AsyncClient | None = None
        # Told of each retry: this endpoint's id and the status that caused it (the router's metrics).
        self.on_retry: Callable[[str, int], None] | None = None

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
            started = False
            try:
                async with asyncio.timeout(self.endpoint.timeout_s):
                    async for chunk in self.adapter.stream(request, ctx):
                        started = True
                        yield chunk
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
        """Readiness from a live probe: a bridge's /health, or an in-process adapter (always ready)."""
        if self.bridge_url is None:
            return {"ready": True, "via": "in-process", "provider": self.endpoint.provider}
        if self._probe is None:
            self._probe = httpx2.AsyncClient(timeout=1.0)
        try:
            response = await self._probe.get(f"{self.bridge_url}/health")
            ok = response.status_code == 200
            return {"ready": ok, "via": "bridge", "url": self.bridge_url, "provider": self.endpoint.provider}
        except httpx2.HTTPError as exc:
            return {"ready": False, "via": "bridge", "url": self.bridge_url, "error": type(exc).__name__}

    async def aclose(self) -> None:
        await self.adapter.aclose()
        if self._probe is not None:
            await self._probe.aclose()


def build_clients(
    config: PanelConfig, bridges: Mapping[str, str] | None = None, *, bridge_key: str | None = None
) -> dict[str, EndpointClient]:
    """A client per endpoint: to its bridge when `bridges` names one (sending `bridge_key` as its bearer
    token), else the in-process provider adapter."""
    clients: dict[str, EndpointClient] = {}
    for endpoint in config.endpoints:
        url = (bridges or {}).get(endpoint.id)
        if url is not None:
            url = url.rstrip("/")
            adapter: ChatAdapter = BridgeClient(
                f"{url}/v1", model=endpoint.id, timeout_s=endpoint.timeout_s, api_key=bridge_key
            )
            clients[endpoint.id] = EndpointClient(endpoint, adapter, bridge_url=url)
        else:
            clients[endpoint.id] = EndpointClient(endpoint, make_adapter(endpoint))
    return clients
