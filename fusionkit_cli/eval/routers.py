"""The routers an eval asks: started in-process from a config, or already running at a URL.

    async with RouterClient() as client, open_routers([RouterSource.of_config("demo.yaml", store)], client) as routers:
        answer = await client.chat(routers[0], task.request_body("fusionkit/panel"))

Either way every question goes over the router's HTTP API, so both paths run the same code: a
config's router is the real app (`server.app.create_app`) served by uvicorn on a free loopback
port inside this process, its run store where the eval says (in its output directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx2
import uvicorn

from fusionkit_cli.common import load_config_or_exit
from fusionkit_cli.eval.answers import Answer
from server.store.opening import is_postgres_url

__all__ = ["Router", "RouterClient", "RouterSource", "RouterUnreachable", "open_routers", "serve_in_process"]

REQUEST_TIMEOUT_S = 600.0


class RouterUnreachable(Exception):
    """A router that does not answer at all (as opposed to answering one question with an error)."""


@dataclass(frozen=True)
class RouterSource:
    """Where one config's answers come from: a config file (run in-process) or a router's URL."""

    name: str
    config_path: str | None = None
    url: str | None = None
    store: str | None = None  # the run store of an in-process router

    @property
    def where(self) -> str:
        return self.config_path or self.url or ""


@dataclass
class Router:
    """A router ready for questions, and what the eval needs to know of its config."""

    name: str
    url: str
    members: list[str]
    judge: str | None
    synthesizer: str | None
    source: RouterSource
    api_key: str | None = None
    endpoints: list[str] = field(default_factory=list)  # every endpoint id it serves


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside the eval's own event loop; Ctrl-C stays the eval's, which stops the server itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def serve_in_process(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app on a free loopback port in this event loop; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # "critical": a request the eval abandons (Ctrl-C) is logged by uvicorn as an error; the eval records
    # every answer it gets, errors included, so nothing is lost by quieting it.
    config = uvicorn.Config(app, log_level="critical", access_log=False, lifespan="on", timeout_graceful_shutdown=3)
    server = _EmbeddedServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RouterUnreachable("the in-process router stopped while starting")
            await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
        sock.close()


class RouterClient:
    """HTTP to routers: one connection pool for the whole eval."""

    def __init__(self, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self._http = httpx2.AsyncClient(
            timeout=timeout_s, limits=httpx2.Limits(max_connections=256, max_keepalive_connections=64)
        )

    async def __aenter__(self) -> RouterClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._http.aclose()

    def _headers(self, router: Router) -> dict[str, str]:
        return {"Authorization": f"Bearer {router.api_key}"} if router.api_key else {}

    async def _post(self, router: Router, path: str, body: dict[str, Any]) -> Answer:
        started = time.perf_counter()
        try:
            response = await self._http.post(router.url + path, json=body, headers=self._headers(router))
        except httpx2.HTTPError as exc:
            wall = (time.perf_counter() - started) * 1000
            return Answer.failed(f"cannot reach the router at {router.url}: {type(exc).__name__}: {exc}", wall_ms=wall)
        wall = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            try:
                message = response.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:300]
            return Answer.failed(
                f"the router answered {response.status_code}: {message}",
                wall_ms=wall,
                run_id=response.headers.get("x-fusion-run-id"),
                status=response.status_code,
            )
        return Answer.from_completion(response.json(), wall_ms=wall)

    async def chat(self, router: Router, body: dict[str, Any]) -> Answer:
        return await self._post(router, "/v1/chat/completions", body)

    async def rejudge(self, router: Router, run_id: str, *, judge: str | None, synthesizer: str | None) -> Answer:
        body = {k: v for k, v in (("judge_model", judge), ("synthesizer_model", synthesizer)) if v}
        return await self._post(router, f"/v1/fusion/runs/{run_id}/rejudge", body)

    async def endpoints(self, url: str, api_key: str | None) -> list[str]:
        """The endpoint ids a router serves (its model list, less the `fusionkit/*` modes)."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            response = await self._http.get(url + "/v1/models", headers=headers, timeout=30)
        except httpx2.HTTPError as exc:
            raise RouterUnreachable(f"cannot reach the router at {url}: {exc}") from None
        if response.status_code != 200:
            raise RouterUnreachable(f"the router at {url} answered {response.status_code}: {response.text[:200]}")
        return [m["id"] for m in response.json().get("data", []) if not str(m["id"]).startswith("fusionkit/")]


@asynccontextmanager
async def open_routers(sources: list[RouterSource], client: RouterClient) -> AsyncIterator[list[Router]]:
    """Start (or reach) one router per source; every in-process router is stopped on the way out."""
    from server.app import create_app

    async with AsyncExitStack() as stack:
        routers = []
        for source in sources:
            if source.config_path is not None:
                config = load_config_or_exit(source.config_path)
                if source.store and not is_postgres_url(source.store):
                    Path(source.store).parent.mkdir(parents=True, exist_ok=True)
                app = create_app(config, store_path=source.store)
                url = await stack.enter_async_context(serve_in_process(app))
                key_env = config.server.api_key_env
                router = Router(
                    name=source.name,
                    url=url,
                    members=config.panel_members,
                    judge=config.judge,
                    synthesizer=config.synthesizer,
                    source=source,
                    api_key=os.environ.get(key_env) if key_env else None,
                    endpoints=[e.id for e in config.endpoints],
                )
            else:
                url = str(source.url).rstrip("/")
                key = os.environ.get("FUSIONKIT_API_KEY")
                members = await client.endpoints(url, key)
                router = Router(source.name, url, members, None, None, source, key, endpoints=members)
            routers.append(router)
        yield routers
