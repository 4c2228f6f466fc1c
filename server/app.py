"""The fusion router's HTTP app.

    app = create_app(load_config("configs/demo.yaml"))                  # in-process adapters
    app = create_app(config, bridges={"fast": "http://127.0.0.1:9101"})  # through bridges (under `up`)

Routes: GET /health, GET /metrics (Prometheus), the run viewer at /ui, GET /v1/models,
POST /v1/chat/completions, the agent front doors POST /v1/responses and POST /v1/messages
(`server.doors`), the /v1/fusion/runs family (`server.runs_api`) and the trajectory endpoints
(`server.trajectories_api`). The HTTP layer
parses and answers; the fusion engine (`server.engine`) does the work; `server.runs` records it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response

from bridge.auth import BearerAuth
from bridge.errors import not_found
from bridge.http import AccessLogMiddleware, install_error_handlers, log_context, reads_body
from bridge.metrics import metrics_response
from bridge.openapi import answers, document, errors
from bridge.otel import OtelSettings, Tracing
from bridge.protocol import ModelCard, ModelList
from bridge.tracing import TraceEmitter
from server.chat import ChatHandler
from server.clients import EndpointClient, build_clients
from server.config import PanelConfig
from server.doors import FusionPath, messages_error_body, messages_router, responses_router
from server.engine import FusionEngine
from server.observe.exporter import ExporterProcess
from server.observe.metrics import RouterMetrics
from server.observe.ui import UI_PATH, viewer
from server.observe.watch import RunObserver
from server.protocol import FUSION_MODELS
from server.protocol.chat import FusedChatCompletion, FusionChatRequest, RouterHealth
from server.rejudge import rejudge_router
from server.runs import RunService
from server.runs_api import runs_router
from server.store import open_store, store_location
from server.store.upkeep import StoreUpkeep
from server.trajectories_api import trajectories_router

__all__ = ["create_app"]

log = logging.getLogger("fusionkit.router")


def create_app(
    config: PanelConfig,
    *,
    bridges: Mapping[str, str] | None = None,
    clients: dict[str, EndpointClient] | None = None,
    store_path: str | Path | None = None,
    tracer: TraceEmitter | None = None,
    tracing: Tracing | None = None,
    keepalive_s: float = 2.0,
) -> FastAPI:
    """Build a router for `config`; `bridges` maps endpoint ids to bridge URLs (else in-process).

    OpenTelemetry spans go to `tracing` (in this process), by default to `server.otel.endpoint` or the
    OTLP endpoint the environment names, if any, through a helper process (server/observe/exporter.py);
    else tracing is off and its SDK never imported.
    The run store is `store_path`, else `FUSIONKIT_RUN_STORE`, else `server.run_store`: a SQLite file
    or a postgresql:// URL (a store shared by several replicas of this router).
    """
    auth = BearerAuth.from_env(config.server.api_key_env)  # a named but unset variable raises, never auth off
    endpoint_clients = clients if clients is not None else build_clients(config, bridges)
    store = open_store(store_path or store_location(config.server.run_store))
    upkeep = StoreUpkeep(store, lease_s=config.server.run_lease_s, retention=config.server.retention)
    trace = tracer or TraceEmitter.from_env()
    exporter = None
    if tracing is None:
        otel = config.server.otel
        settings = OtelSettings.resolve(
            service_name="fusionkit-router", endpoint=otel.endpoint, capture_content=otel.capture_content
        )
        exporter = ExporterProcess(settings) if settings is not None else None
    metrics = RouterMetrics(config) if config.server.metrics else None
    if metrics is not None:
        metrics.watch_store(store)
        metrics.watch_clients(endpoint_clients.values())
    runs = RunService(store, trace, RunObserver(config, metrics=metrics, spans=tracing or exporter))
    engine = FusionEngine(config, endpoint_clients)
    fusion = FusionPath(engine, runs, keepalive_s=keepalive_s)
    chat = ChatHandler(fusion)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The lease, not the start: runs of another live router on this store are never expired.
        await upkeep.start()
        await trace.start()
        if exporter is not None:
            await exporter.start()
        mocks = [c.id for c in endpoint_clients.values() if c.endpoint.is_mock]
        if mocks:
            log.info("endpoints %s are OFFLINE MOCK models (provider 'mock')", ", ".join(mocks))
        yield
        await runs.stop()
        await upkeep.stop()
        await trace.aclose()
        await asyncio.gather(*(c.aclose() for c in endpoint_clients.values()), return_exceptions=True)
        await store.close()
        if exporter is not None:
            await exporter.close()
        if tracing is not None:
            tracing.shutdown()

    app = FastAPI(title="fusionkit router", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(
        AccessLogMiddleware,
        metrics=metrics.http if metrics else None,
        error_bodies={"/v1/messages": messages_error_body},  # Anthropic's door answers in Anthropic's shape
    )

    if metrics is not None:
        scrape_auth = [Depends(auth)] if config.server.metrics_auth else []

        @app.get("/metrics", include_in_schema=False, dependencies=scrape_auth)
        async def scrape() -> Response:
            return metrics_response(metrics.registry)

    app.mount(UI_PATH, viewer(), name="ui")

    @app.get("/health")
    async def health() -> RouterHealth:
        ids = list(endpoint_clients)
        states = await asyncio.gather(*(endpoint_clients[i].ready() for i in ids))
        endpoints = dict(zip(ids, states, strict=True))
        ready = sum(1 for s in states if s["ready"])
        status = "ok" if ready == len(ids) else ("degraded" if ready else "unavailable")
        recording = store.health()
        if recording.status != "ok" and status == "ok":
            status = "degraded"  # answers nothing new until its runs can be recorded (503 store_unavailable)
        return RouterHealth(
            status=status, endpoints=endpoints, store=recording.model_dump(exclude_none=True), auth=auth.enabled
        )

    @app.head("/", response_class=Response, responses={200: {"description": "The router is up (no body)"}})
    async def preflight() -> Response:
        """Claude Code checks the base URL with `HEAD /` before its first request."""
        return Response(status_code=200)

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(auth)])

    cards = [ModelCard(id=m, owned_by="fusionkit") for m in FUSION_MODELS]
    for client in endpoint_clients.values():
        label = f"fusionkit-endpoint/{client.endpoint.provider}"
        cards.append(ModelCard(id=client.id, owned_by=label + (" (offline mock)" if client.endpoint.is_mock else "")))

    @v1.get("/models", responses=errors(401))
    async def models() -> ModelList:
        return ModelList(data=cards)

    @v1.get("/models/{model_id:path}", responses=errors(401, 404))
    async def model(model_id: str) -> ModelCard:
        card = next((c for c in cards if c.id == model_id), None)
        if card is None:
            raise not_found(f"model '{model_id[:80]}' does not exist here; see GET /v1/models")
        return card

    @v1.post(
        "/chat/completions",
        response_model=None,
        responses=answers(FusedChatCompletion, stream=True) | errors(400, 401, 404, 409, 413, 502, 503, 504),
    )
    @reads_body(FusionChatRequest)
    async def chat_completions(request: Request, body: FusionChatRequest) -> Response:
        log_context(request)["model"] = body.model  # before any refusal, so it is counted under its model
        return await chat(request, body)

    v1.include_router(responses_router(fusion))
    v1.include_router(messages_router(fusion))
    v1.include_router(runs_router(engine, runs, store))
    v1.include_router(trajectories_router(engine, runs, keepalive_s=keepalive_s))
    v1.include_router(rejudge_router(engine, runs, store, keepalive_s=keepalive_s))
    app.include_router(v1)
    app.state.store = store
    app.state.engine = engine
    app.state.runs = runs
    app.openapi = document(app)  # type: ignore[method-assign]
    return app
