"""The benchmark scenarios, in the order `python -m bench` runs them.

Each is a function `(Settings) -> Result`: it starts the processes it measures, stops them
before it returns, and reports rows of median and p95 against a floor and a target.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.scenarios.bridge import bridge_passthrough, bridge_start
from bench.scenarios.common import Settings
from bench.scenarios.eval import eval_run
from bench.scenarios.observe import observability_cost
from bench.scenarios.replicas import replicas_throughput
from bench.scenarios.router import quorum, router_latency, router_throughput, straggler
from bench.scenarios.streaming import streaming
from bench.scenarios.up import up_cold_start
from bench.stats import Result

__all__ = ["SCENARIOS", "Settings"]

SCENARIOS: dict[str, Callable[[Settings], Result]] = {
    "bridge_passthrough": bridge_passthrough,
    "bridge_start": bridge_start,
    "router_latency": router_latency,
    "router_throughput": router_throughput,
    "replicas_throughput": replicas_throughput,
    "streaming": streaming,
    "straggler": straggler,
    "quorum": quorum,
    "up_cold_start": up_cold_start,
    "eval": eval_run,
    "observability_cost": observability_cost,
}
