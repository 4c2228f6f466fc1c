"""The router's Prometheus metrics: one registry per app (docs/observability.md).

    metrics = RouterMetrics(config)
    metrics.watch_store(store); metrics.watch_clients(clients)     # queue depth, batches, retries
    metrics.registry                                               # what GET /metrics renders

The families are filled by the HTTP middleware (`http`) and by `server.observe.watch.RunWatch`,
which reads them off the run's events; nothing in the engine counts anything itself. Label values
are bounded: endpoint ids and models from the config, states, roles, phases and decision reasons
from the engine's fixed vocabularies (anything else is "other").
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry

from bridge.metrics import LATENCY_BUCKETS, CallMetrics, Counter, Gauge, Histogram, RequestMetrics, call_outcome
from server.clients import EndpointClient
from server.config import PanelConfig
from server.protocol import FUSION_MODELS, MODE_ALIASES, MODES
from server.store import RunStoreAPI

__all__ = ["LIVE_STATES", "RouterMetrics", "bounded"]

# States a run can be in while it executes; the ending ones are counted in fusionkit_runs_total.
LIVE_STATES = ("queued", "generating", "requires_action", "judging", "synthesizing", "verifying")
RUN_MODES = (*MODES, "trajectories", "step", "rejudge")
ROLES = ("panel", "single", "judge", "synthesizer", "verifier")
# Decision reasons the engine gives (server.engine.decide, engine): a select that skipped the judge is an early exit.
EARLY_EXITS = ("only_one_candidate", "unanimous", "unanimous_tool_call", "budget_max_cost")
DECISION_REASONS = (
    *EARLY_EXITS,
    "single_mode",
    "judged_and_synthesized",
    "agent_step",
    "empty_synthesis",
    "synthesizer_failed",
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


def bounded(value: object, allowed: Iterable[str], other: str = "other") -> str:
    """`value` as a label when it is one of `allowed`, else `other`: a label never takes an unforeseen value."""
    text = str(value)
    return text if text in allowed else other


class RouterMetrics:
    """Every metric family of one router, in a registry of its own (tests build many apps in one process)."""

    def __init__(self, config: PanelConfig) -> None:
        self.config = config
        self.endpoints = frozenset(e.id for e in config.endpoints)
        registry = self.registry = CollectorRegistry()
        aliases = [f"fusionkit/{alias}" for alias in MODE_ALIASES]
        self.http = RequestMetrics(registry, models=[*FUSION_MODELS, *aliases, *self.endpoints])
        self.calls = CallMetrics(registry, "fusionkit_model", ("role",))
        self.phases = Histogram(
            "fusionkit_run_phase_duration_seconds",
            "Time a run spent in each state (generating, judging, synthesizing, verifying, requires_action)",
            ["phase"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.run_latency = Histogram(
            "fusionkit_run_duration_seconds",
            "Runs from creation to their end, by mode and end state",
            ["mode", "state"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.first_token = Histogram(
            "fusionkit_time_to_first_token_seconds",
            "Streamed runs: seconds from the run's creation to the first token of the answer sent to the client",
            ["mode"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "fusionkit_runs_in_flight", "Runs executing in this router, by state", ["state"], registry=registry
        )
        for state in LIVE_STATES:
            self.in_flight.labels(state).set(0)
        self.runs = Counter(
            "fusionkit_runs", "Runs that ended, by mode and end state", ["mode", "state"], registry=registry
        )
        self.drops = Counter(
            "fusionkit_member_drops",
            "Panel members dropped from a run (error, timeout, empty answer, refused tool)",
            ["endpoint"],
            registry=registry,
        )
        self.degraded = Counter(
            "fusionkit_degraded_answers",
            "Completed runs whose answer was degraded: a member dropped, the judge failed or was unparsable, "
            "or the synthesis fell back to a candidate",
            ["reason"],
            registry=registry,
        )
        self.decisions = Counter(
            "fusionkit_decisions", "How runs chose their answer", ["decision", "reason"], registry=registry
        )
        self.early_exits = Counter(
            "fusionkit_early_exits",
            "Runs with several candidates that selected one without judging (unanimous, one left, budget)",
            ["reason"],
            registry=registry,
        )
        self.retries = Counter(
            "fusionkit_retries",
            "Model calls retried, by endpoint and the outcome retried",
            ["endpoint", "outcome"],
            registry=registry,
        )
        self.store_queue = Gauge(
            "fusionkit_store_queue_depth", "Run store calls waiting for the store's thread", registry=registry
        )
        self.store_batch = Histogram(
            "fusionkit_store_batch_size",
            "Calls the run store wrote per batch (group commit)",
            buckets=BATCH_BUCKETS,
            registry=registry,
        )

    def endpoint(self, endpoint_id: object) -> str:
        return bounded(endpoint_id, self.endpoints)

    def watch_store(self, store: RunStoreAPI) -> None:
        self.store_queue.set_function(lambda: store.queue_depth)
        store.on_batch = self.store_batch.observe

    def watch_clients(self, clients: Iterable[EndpointClient]) -> None:
        for client in clients:
            client.on_retry = self._retried

    def _retried(self, endpoint_id: str, status: int) -> None:
        self.retries.labels(self.endpoint(endpoint_id), call_outcome(status)).inc()
