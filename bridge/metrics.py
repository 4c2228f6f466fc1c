"""Prometheus metrics: what both servers count, and the bridge's own.

    registry = CollectorRegistry()                    # one per app, never the global default
    http = RequestMetrics(registry, models=["fast"])  # AccessLogMiddleware(app, metrics=http) feeds it
    calls = CallMetrics(registry, "fusionkit_bridge_upstream")
    calls.record("fast", seconds=0.8, status=None, input_tokens=12, output_tokens=40, pricing=pricing)
    metrics_response(registry)                        # GET /metrics

Every label value is bounded: routes are templates (`/v1/fusion/runs/{run_id}`, never a raw path),
models come from the configured set (anything else is "other"), statuses are HTTP codes and
outcomes one of `OUTCOMES`. No run id and no text a client sent ever becomes a label.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import prometheus_client
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from bridge.endpoint import EndpointConfig, Pricing

__all__ = [
    "LATENCY_BUCKETS",
    "OUTCOMES",
    "BridgeMetrics",
    "CallMetrics",
    "Counter",
    "Gauge",
    "Histogram",
    "RequestMetrics",
    "call_outcome",
    "metrics_response",
]

# Seconds: a cached local answer takes milliseconds, a long cloud generation minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
OUTCOMES = ("ok", "timeout", "rate_limited", "error", "cancelled")
OTHER = "other"


class _KnownChildren:
    """`labels()` that remembers the children it returned. prometheus_client checks the values and takes a
    lock on every call (~0.7 µs, 36 calls a fused request); our label values are few and bounded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._known: dict[tuple[object, ...], Any] = {}

    def labels(self, *values: Any, **named: Any) -> Any:
        if named:
            return super().labels(*values, **named)  # type: ignore[misc]
        child = self._known.get(values)
        if child is None:
            child = self._known[values] = super().labels(*values)  # type: ignore[misc]
        return child


class Counter(_KnownChildren, prometheus_client.Counter):
    pass


class Gauge(_KnownChildren, prometheus_client.Gauge):
    pass


class Histogram(_KnownChildren, prometheus_client.Histogram):
    pass


def call_outcome(status: int | None) -> str:
    """A model call's outcome from the HTTP status of its failure (None: it answered)."""
    if status is None:
        return "ok"
    if status in (408, 504):
        return "timeout"
    if status == 429:
        return "rate_limited"
    if status == 499:
        return "cancelled"  # the caller went away first
    return "error"


class RequestMetrics:
    """HTTP requests by route template, model and status, and how long they took (streams: to their last byte)."""

    def __init__(self, registry: CollectorRegistry, *, models: Iterable[str]) -> None:
        self.models = frozenset(models)
        self.requests = Counter(
            "fusionkit_http_requests",
            "HTTP requests answered, by route template, model asked for and status",
            ["route", "model", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "fusionkit_http_request_duration_seconds",
            "HTTP request latency by route template, to the last byte of the answer",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def observe(self, route: str, model: str | None, status: int, seconds: float) -> None:
        label = "none" if not model else (model if model in self.models else OTHER)
        self.requests.labels(route, label, str(status)).inc()
        self.latency.labels(route).observe(seconds)


class CallMetrics:
    """Model calls: how many by outcome, how long they took, tokens in and out, and their estimated cost.

    The router counts its calls by endpoint and role (`fusionkit_model_*`); a bridge counts its calls
    upstream (`fusionkit_bridge_upstream_*`). `extra` names labels between `endpoint` and `outcome`.
    """

    def __init__(self, registry: CollectorRegistry, prefix: str, extra: tuple[str, ...] = ()) -> None:
        outcomes = "Model calls by outcome (ok, timeout, rate_limited, error, cancelled)"
        self.calls = Counter(f"{prefix}_calls", outcomes, ["endpoint", *extra, "outcome"], registry=registry)
        self.latency = Histogram(
            f"{prefix}_call_duration_seconds",
            "Model call latency, failed calls included",
            ["endpoint", *extra],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        directions = "Tokens of answered model calls, by direction (input, output)"
        self.tokens = Counter(f"{prefix}_tokens", directions, ["endpoint", "direction"], registry=registry)
        priced = "Estimated cost of answered model calls (tokens x configured pricing)"
        self.cost = Counter(f"{prefix}_cost", priced, ["endpoint", "currency"], registry=registry)

    def record(
        self,
        endpoint: str,
        *extra: str,
        seconds: float,
        status: int | None,
        input_tokens: int = 0,
        output_tokens: int = 0,
        pricing: Pricing | None = None,
    ) -> None:
        self.calls.labels(endpoint, *extra, call_outcome(status)).inc()
        self.latency.labels(endpoint, *extra).observe(seconds)
        if input_tokens:
            self.tokens.labels(endpoint, "input").inc(input_tokens)
        if output_tokens:
            self.tokens.labels(endpoint, "output").inc(output_tokens)
        cost = pricing.cost(input_tokens, output_tokens) if pricing is not None else None
        if cost:
            self.cost.labels(endpoint, pricing.currency if pricing else "").inc(cost)


class BridgeMetrics:
    """A bridge's registry: its HTTP requests, its calls upstream and their time to first token (streams)."""

    def __init__(self, endpoint: EndpointConfig) -> None:
        self.endpoint = endpoint
        self.registry = CollectorRegistry()
        self.http = RequestMetrics(self.registry, models=[endpoint.id])
        self.calls = CallMetrics(self.registry, "fusionkit_bridge_upstream")
        self.first_token = Histogram(
            "fusionkit_bridge_time_to_first_token_seconds",
            "Streamed calls: seconds from the request to the first content the provider sent",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def call(self, seconds: float, status: int | None, usage: dict[str, Any] | None = None) -> None:
        usage = usage or {}
        self.calls.record(
            self.endpoint.id,
            seconds=seconds,
            status=status,
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
            pricing=self.endpoint.pricing,
        )


def metrics_response(registry: CollectorRegistry) -> Response:
    """The registry in the Prometheus text format, as `GET /metrics` answers."""
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
