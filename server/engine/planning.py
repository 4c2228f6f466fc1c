"""Planning a run before any model is called: its mode and route, who answers, and with what request.

    plan = plan_run(config, endpoint_ids, request, FusionOptions(mode="router"))
    plan.route, plan.route_reasons, [m.endpoint_id for m in plan.members]

A plan is made once, by the HTTP layer, so a client's mistake (an unknown panel member, a budget
the run would break, a `response_format` schema that is not a JSON Schema) is its 400 before the
run is recorded; the engine then executes that plan.
The request in a plan already carries the config's sampling defaults.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from bridge.errors import bad_request
from bridge.protocol import ChatRequest
from server.config import FusionSettings, PanelConfig
from server.engine.candidates import MemberPlan
from server.engine.routing import choose_route
from server.engine.structured import AnswerSchema
from server.protocol.chat import FusionOptions

__all__ = ["RunPlan", "choose_endpoint", "plan_run"]


@dataclass(frozen=True)
class RunPlan:
    """What one run will do. `mode` is what was asked; `route` what runs (they differ in router mode)."""

    request: ChatRequest
    options: FusionOptions
    mode: str
    route: str
    route_reasons: list[str]
    members: list[MemberPlan]
    fusion: FusionSettings  # the config's `fusion:` section, with what the request set over it
    schema: AnswerSchema | None = None  # the JSON the answer must be (`response_format`); None: any text

    def describe(self) -> dict[str, Any]:
        """The plan as the run's `generating` event records it."""
        return {
            "mode": self.mode,
            "route": self.route,
            "route_reasons": self.route_reasons,
            "members": [m.model_dump() for m in self.members],
        }


def plan_run(config: PanelConfig, endpoints: Collection[str], request: ChatRequest, options: FusionOptions) -> RunPlan:
    """The plan for `request`, or the 400 a client should get before anything runs."""
    request = _with_sampling_defaults(config, request)
    mode: str = options.mode or config.default_mode
    route, reasons = mode, [f"mode '{mode}' requested"]
    if mode == "router":
        route, reasons = choose_route(request, endpoint_count=len(config.endpoints))
    members = _members(config, endpoints, route, options, request)
    max_candidates = config.budget.max_candidates
    if max_candidates is not None and len(members) > max_candidates:
        raise bad_request(
            f"the run would make {len(members)} candidates but budget.max_candidates is {max_candidates}",
            code="budget_exceeded",
            param="fusion.sample_count" if route == "self" else "fusion.panel_models",
        )
    asked = {k: v for k in ("synthesis", "tool_fusion", "show_reasoning") if (v := getattr(options, k)) is not None}
    # A schema that is not one is the client's 400 now, not a failure after the panel has answered.
    schema = AnswerSchema.of(request)
    return RunPlan(request, options, mode, route, reasons, members, config.fusion.model_copy(update=asked), schema)


def choose_endpoint(
    endpoints: Collection[str], value: str | None, default: str, param: str, *, code: str = "unknown_endpoint"
) -> str:
    """`value` (else `default`) when it names an endpoint; else the 400 naming `param` and the allowed ids."""
    chosen = value or default
    if chosen not in endpoints:
        raise bad_request(
            f"{param} '{chosen}' is not an endpoint; allowed: {', '.join(endpoints)}", param=param, code=code
        )
    return chosen


def _with_sampling_defaults(config: PanelConfig, request: ChatRequest) -> ChatRequest:
    sampling = config.sampling
    update: dict[str, Any] = {}
    if request.temperature is None:
        update["temperature"] = sampling.temperature
    if request.top_p is None:
        update["top_p"] = sampling.top_p
    if request.token_limit is None:
        update["max_tokens"] = sampling.max_tokens
    if request.seed is None and sampling.seed is not None:
        update["seed"] = sampling.seed
    return request.model_copy(update=update) if update else request


def _members(
    config: PanelConfig, endpoints: Collection[str], route: str, options: FusionOptions, request: ChatRequest
) -> list[MemberPlan]:
    default = config.default_endpoint
    if route == "single":
        # A request for an endpoint id (not a fusionkit/* model) arrives as single on that endpoint.
        asked = options.panel_models[0] if options.mode == "single" and options.panel_models else None
        chosen = choose_endpoint(endpoints, asked, default, "fusion.panel_models")
        return [MemberPlan(candidate_id="c1", endpoint_id=chosen)]
    if route == "self":
        count = options.sample_count or config.sample_count
        temps = config.self_temperatures or [request.temperature or 0.7]
        return [
            MemberPlan(
                candidate_id=f"c{i + 1}",
                endpoint_id=default,
                temperature=temps[i % len(temps)],
                seed=None if request.seed is None else request.seed + i,
            )
            for i in range(count)
        ]
    members = options.panel_models or config.panel_members
    unknown = [m for m in members if m not in endpoints]
    if unknown:
        raise bad_request(
            f"fusion.panel_models names unknown endpoints {unknown}; allowed: {', '.join(endpoints)}",
            param="fusion.panel_models",
            code="unknown_endpoint",
        )
    return [MemberPlan(candidate_id=f"c{i + 1}", endpoint_id=m) for i, m in enumerate(members)]
