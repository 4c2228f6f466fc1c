"""The bridge's HTTP app: one provider model as an OpenAI Chat Completions server.

app = create_app(EndpointConfig(id="m", provider="mock", model="mock-1"))
uvicorn.run(app, port=9101)
# OpenAI(base_url="http://127.0.0.1:9101/v1", api_key="x").chat.completions.create(model="m", ...)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from bridge.adapters import CallContext, ChatAdapter, make_adapter
from bridge.auth import BearerAuth
from bridge.endpoint import EndpointConfig
from bridge.errors import APIError, not_found, upstream_failure
from bridge.http import (
    SSE_HEADERS,
    AccessLogMiddleware,
    ClientDisconnected,
    install_error_handlers,
    log_context,
    race_disconnect,
    reads_body,
    sse_data,
    sse_stream,
)
from bridge.metrics import BridgeMetrics, metrics_response
from bridge.observe import BridgeObserver
from bridge.openapi import answers, document, errors
from bridge.otel import OtelSettings, Tracing
from bridge.protocol import (
    BridgeHealth,
    ChatCompletion,
    ChatCompletionChunk,
    ChatRequest,
    ModelCard,
    ModelList,
    chunk_to_dict,
    completion_to_dict,
    new_completion_id,
)
from bridge.stream import normalize_stream
from bridge.tracing import TraceEmitter

__all__ = ["create_app"]

log = logging.getLogger("fusionkit.bridge")
HEALTH_PATHS = ("/health", "/v1/health")  # open without a key, for probes
METRICS_PATH = "/metrics"


def create_app(
    endpoint: EndpointConfig,
    adapter: ChatAdapter | None = None,
    *,
    auth_key: str | None = None,
    metrics: bool = True,
    metrics_auth: BearerAuth | None = None,
    tracing: Tracing | None = None,
) -> FastAPI:
    """Build a bridge for `endpoint`. The adapter (one per process) is made here unless given.

    With `auth_key`, every route but the health probes and the API's public description (`/openapi.json`,
    `/docs`, which FastAPI serves outside app dependencies) needs the key (`bridge.auth.BearerAuth`).
    `GET /metrics` (unless `metrics` is False) needs `metrics_auth`, by default the same key.
    OpenTelemetry spans go to `tracing`, by default to the OTLP endpoint the environment names, if any.
    """
    chat: ChatAdapter = adapter or make_adapter(endpoint)
    auth = BearerAuth(auth_key)
    scrape_auth = metrics_auth or auth

    async def guard(request: Request) -> None:
        # On the whole app, so a route added later is guarded too; probes need no key, /metrics its own.
        path = request.url.path
        if path == METRICS_PATH and metrics:
            await scrape_auth(request)
        elif path not in HEALTH_PATHS:
            await auth(request)

    tracer = TraceEmitter.from_env()
    if tracing is None:
        settings = OtelSettings.resolve(service_name="fusionkit-bridge")
        tracing = Tracing(settings) if settings is not None else None
    counted = BridgeMetrics(endpoint) if metrics else None
    observer = BridgeObserver(endpoint, tracer, metrics=counted, tracing=tracing)
    owned_by = f"fusionkit-bridge/{endpoint.provider}" + (" (offline mock)" if endpoint.is_mock else "")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info(
            "bridge %s ready: provider=%s model=%s%s",
            endpoint.id,
            endpoint.provider,
            endpoint.model,
            " [MOCK: offline, not a real model]" if endpoint.is_mock else "",
        )
        await tracer.start()
        yield
        await tracer.aclose()
        await chat.aclose()
        if tracing is not None:
            tracing.shutdown()

    app = FastAPI(title=f"fusionkit bridge: {endpoint.id}", lifespan=lifespan, dependencies=[Depends(guard)])
    install_error_handlers(app)
    app.add_middleware(AccessLogMiddleware, metrics=counted.http if counted else None)

    if counted is not None:

        @app.get(METRICS_PATH, include_in_schema=False)
        async def scrape() -> Response:
            return metrics_response(counted.registry)

    def context_of(request: Request) -> CallContext:
        headers = request.headers
        return CallContext(
            trace_id=headers.get("x-fusion-trace-id"),
            span_id=headers.get("x-fusion-span-id"),
            parent_span_id=headers.get("x-fusion-parent-span-id"),
            candidate_id=headers.get("x-fusion-candidate-id"),
            timeout_s=endpoint.timeout_s,
        )

    @app.get("/health")
    @app.get("/v1/health")
    async def health() -> BridgeHealth:
        return BridgeHealth(status="ok", model=endpoint.id, provider=endpoint.provider, mock=endpoint.is_mock)

    card = ModelCard(id=endpoint.id, owned_by=owned_by)

    @app.get("/v1/models", responses=errors(401))
    async def models() -> ModelList:
        return ModelList(data=[card])

    @app.get("/v1/models/{model_id:path}", responses=errors(401, 404))
    async def model(model_id: str) -> ModelCard:
        if model_id not in (endpoint.id, endpoint.model):
            raise not_found(f"model '{model_id[:80]}' is not served here; this bridge serves '{endpoint.id}'")
        return card

    @app.post(
        "/v1/chat/completions",
        response_model=None,
        responses=answers(ChatCompletion, stream=True)
        | errors(400, 401, 402, 403, 404, 409, 413, 422, 429, 502, 503, 504),
    )
    @reads_body(ChatRequest)
    async def chat_completions(request: Request, body: ChatRequest) -> Response:
        if body.model not in (endpoint.id, endpoint.model):
            raise not_found(
                f"model '{body.model}' is not served here; this bridge serves '{endpoint.id}' "
                f"({endpoint.provider}/{endpoint.model})"
            )
        log_context(request)["model"] = endpoint.id
        body.require_one_choice()
        # The upstream gets the provider's model name whatever alias the client used.
        upstream = body.model_copy(update={"model": endpoint.model})
        watch = observer.call(body, context_of(request), request.headers.get("traceparent"))
        if not body.stream:
            try:
                completion = await race_disconnect(request, chat.complete(upstream, watch.ctx))
            except APIError as error:
                watch.failed(error.status, error.message)
                raise
            except (ClientDisconnected, asyncio.CancelledError):
                watch.failed(499, "the client went away")
                raise
            except Exception as exc:  # an adapter's bug: answered as a 500 by the error handler
                watch.failed(500, f"the call failed: {type(exc).__name__}")
                raise
            watch.answered(completion)
            completion.model = body.model
            return JSONResponse(completion_to_dict(completion))
        return await _stream_response(watch.stream(chat.stream(upstream, watch.ctx)), body)

    app.openapi = document(app)  # type: ignore[method-assign]
    return app


async def _stream_response(chunks: AsyncIterator[ChatCompletionChunk], body: ChatRequest) -> Response:
    """Start the stream; a failure before the first chunk is still a plain HTTP error."""
    normalized = normalize_stream(
        chunks, completion_id=new_completion_id(), model=body.model, include_usage=body.wants_usage_chunk
    )
    first = await anext(normalized)  # never exhausted: an empty stream raises stream_cut_short

    async def frames() -> AsyncIterator[bytes]:
        yield sse_data(chunk_to_dict(first))
        async for chunk in normalized:
            yield sse_data(chunk_to_dict(chunk))
        yield sse_data("[DONE]")

    def error_frame(exc: BaseException) -> bytes:
        error = exc if isinstance(exc, APIError) else upstream_failure("upstream stream failed")
        return sse_data(error.body())

    return StreamingResponse(sse_stream(frames(), error_frame), media_type="text/event-stream", headers=SSE_HEADERS)
