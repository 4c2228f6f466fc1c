"""From scored outcomes to the numbers of the report: per arm, per config, between arms.

    summary = summarise(arms, outcomes)
    summary.arms[0].accuracy, summary.configs[0].oracle, summary.comparisons[0].p_value

Only trials (task, repetition) that every arm answered count, so every comparison is paired; an eval
stopped by `--max-cost` is summarised over the tasks it finished. Every figure keeps the outcomes it
was computed from, so the report can link each number to its run ids.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

from fusionkit_cli.eval.results import Arm, Outcome
from fusionkit_cli.eval.stats import Interval, mcnemar, pareto_front, percentile, phi, wilson

__all__ = ["ArmStats", "Comparison", "ConfigStats", "Correlation", "Regret", "Summary", "summarise"]

Trial = tuple[str, int]


@dataclass
class ArmStats:
    arm: Arm
    outcomes: list[Outcome]
    passed: int
    accuracy: float
    interval: Interval
    mean_cost: float
    cost_complete: bool
    latency_p50: float | None
    latency_p95: float | None
    mean_prompt_tokens: float
    mean_completion_tokens: float
    errors: int
    by_category: dict[str, tuple[int, int]]

    @property
    def n(self) -> int:
        return len(self.outcomes)


@dataclass
class Regret:
    """Trials a member (alone) got right and the fused answer got wrong."""

    fused: str
    trials: list[tuple[Outcome, list[Outcome]]]  # the fused outcome, and the members' right outcomes


@dataclass
class Correlation:
    a: str
    b: str
    phi: float | None
    both_failed: list[tuple[Outcome, Outcome]]


@dataclass
class ConfigStats:
    name: str
    members: list[str]
    best_member: str | None
    oracle_passed: int
    oracle_interval: Interval
    oracle_accuracy: float
    oracle_outcomes: list[list[Outcome]]  # per trial the member outcomes that were right
    regrets: list[Regret]
    correlations: list[Correlation]


@dataclass
class Comparison:
    """McNemar's paired test of two arms over the same trials."""

    a: str
    b: str
    a_only: list[tuple[Outcome, Outcome]]
    b_only: list[tuple[Outcome, Outcome]]
    p_value: float


@dataclass
class Summary:
    trials: int
    planned_trials: int
    arms: list[ArmStats]
    configs: list[ConfigStats]
    comparisons: list[Comparison]
    front_cost: list[str] = field(default_factory=list)
    front_latency: list[str] = field(default_factory=list)
    stopped: str | None = None  # why the eval ended early, if it did

    def arm(self, label: str) -> ArmStats:
        return next(a for a in self.arms if a.arm.label == label)


def _arm_stats(arm: Arm, outcomes: list[Outcome]) -> ArmStats:
    n = len(outcomes)
    passed = sum(o.passed for o in outcomes)
    latencies = [o.latency_ms for o in outcomes if o.error is None]
    categories: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for o in outcomes:
        categories[o.category or "-"][0] += o.passed
        categories[o.category or "-"][1] += 1
    return ArmStats(
        arm=arm,
        outcomes=outcomes,
        passed=passed,
        accuracy=passed / n if n else 0.0,
        interval=wilson(passed, n),
        mean_cost=sum(o.cost for o in outcomes) / n if n else 0.0,
        cost_complete=all(o.cost_complete for o in outcomes),
        latency_p50=percentile(latencies, 50),
        latency_p95=percentile(latencies, 95),
        mean_prompt_tokens=sum(o.prompt_tokens for o in outcomes) / n if n else 0.0,
        mean_completion_tokens=sum(o.completion_tokens for o in outcomes) / n if n else 0.0,
        errors=sum(o.error is not None for o in outcomes),
        by_category={k: (v[0], v[1]) for k, v in sorted(categories.items())},
    )


def _config_stats(name: str, fused: list[ArmStats], members: list[ArmStats], trials: list[Trial]) -> ConfigStats:
    by_trial = {m.arm.name: {o.key: o for o in m.outcomes} for m in members}
    right_members = [[by_trial[m][t] for m in by_trial if by_trial[m][t].passed] for t in trials]
    oracle = sum(bool(r) for r in right_members)
    regrets = []
    for arm in fused:
        mine = {o.key: o for o in arm.outcomes}
        lost = [
            (mine[t], right) for t, right in zip(trials, right_members, strict=True) if right and not mine[t].passed
        ]
        regrets.append(Regret(arm.arm.label, lost))
    correlations = []
    for a, b in itertools.combinations(by_trial, 2):
        fails_a = [not by_trial[a][t].passed for t in trials]
        fails_b = [not by_trial[b][t].passed for t in trials]
        both = [(by_trial[a][t], by_trial[b][t]) for t, x, y in zip(trials, fails_a, fails_b, strict=True) if x and y]
        correlations.append(Correlation(a, b, phi(fails_a, fails_b), both))
    best = max(members, key=lambda m: (m.accuracy, -m.mean_cost), default=None)
    return ConfigStats(
        name=name,
        members=[m.arm.name for m in members],
        best_member=best.arm.label if best else None,
        oracle_passed=oracle,
        oracle_interval=wilson(oracle, len(trials)),
        oracle_accuracy=oracle / len(trials) if trials else 0.0,
        oracle_outcomes=right_members,
        regrets=regrets,
        correlations=correlations,
    )


def _compare(a: ArmStats, b: ArmStats) -> Comparison:
    theirs = {o.key: o for o in b.outcomes}
    pairs = [(o, theirs[o.key]) for o in a.outcomes]
    a_only = [(x, y) for x, y in pairs if x.passed and not y.passed]
    b_only = [(x, y) for x, y in pairs if y.passed and not x.passed]
    return Comparison(a.arm.label, b.arm.label, a_only, b_only, mcnemar(len(a_only), len(b_only)))


def summarise(arms: list[Arm], outcomes: list[Outcome], *, planned_trials: int | None = None) -> Summary:
    """The report's numbers over the trials every arm answered."""
    by_arm: dict[str, dict[Trial, Outcome]] = {arm.label: {} for arm in arms}
    for outcome in outcomes:
        if outcome.arm in by_arm:
            by_arm[outcome.arm][outcome.key] = outcome
    every = [set(answered) for answered in by_arm.values()]
    complete = sorted(set.intersection(*every)) if every else []
    stats = [_arm_stats(arm, [by_arm[arm.label][t] for t in complete]) for arm in arms]
    configs = []
    for name in dict.fromkeys(arm.config for arm in arms):
        fused = [s for s in stats if s.arm.config == name and s.arm.kind == "fused"]
        members = [s for s in stats if s.arm.config == name and s.arm.kind == "member"]
        if members:
            configs.append(_config_stats(name, fused, members, complete))
    fused_all = [s for s in stats if s.arm.kind == "fused"]
    comparisons = [_compare(a, b) for a, b in itertools.combinations(fused_all, 2)]
    for config in configs:
        if config.best_member is None:
            continue
        best = next(s for s in stats if s.arm.label == config.best_member)
        comparisons += [_compare(s, best) for s in fused_all if s.arm.config == config.name and not s.arm.judge]
    return Summary(
        trials=len(complete),
        planned_trials=planned_trials if planned_trials is not None else len(complete),
        arms=stats,
        configs=configs,
        comparisons=comparisons,
        front_cost=pareto_front({s.arm.label: (s.accuracy, s.mean_cost) for s in stats}) if complete else [],
        front_latency=pareto_front({s.arm.label: (s.accuracy, s.latency_p50 or 0.0) for s in stats})
        if complete
        else [],
    )
