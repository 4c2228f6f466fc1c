"""The eval's statistics against values computed by hand, and the summary built from them."""

from __future__ import annotations

import pytest

from fusionkit_cli.eval.results import Arm, Outcome
from fusionkit_cli.eval.stats import mcnemar, pareto_front, percentile, phi, wilson
from fusionkit_cli.eval.summary import summarise


def test_wilson_interval_matches_the_formula_worked_by_hand() -> None:
    # 7/10: centre (0.7 + z²/20) / (1 + z²/10) = 0.6445, half-width 0.2477.
    interval = wilson(7, 10)
    assert interval.low == pytest.approx(0.3968, abs=1e-4) and interval.high == pytest.approx(0.8922, abs=1e-4)
    # 0/10 and 10/10: the bounds are exactly 0 and 1 on the side of the estimate.
    assert wilson(0, 10).low == 0.0 and wilson(0, 10).high == pytest.approx(0.2775, abs=1e-4)
    assert wilson(10, 10).high == 1.0 and wilson(10, 10).low == pytest.approx(0.7225, abs=1e-4)
    assert (wilson(0, 0).low, wilson(0, 0).high) == (0.0, 1.0)


def test_mcnemar_is_the_exact_binomial_tail() -> None:
    # 12 vs 3 discordant: 2 * (C(15,0) + C(15,1) + C(15,2) + C(15,3)) / 2^15 = 2 * 576 / 32768.
    assert mcnemar(12, 3) == pytest.approx(1152 / 32768)
    assert mcnemar(3, 12) == mcnemar(12, 3)
    assert mcnemar(0, 6) == pytest.approx(2 / 64)
    assert mcnemar(5, 5) == 1.0 and mcnemar(0, 0) == 1.0


def test_phi_of_failure_series() -> None:
    a = [True, True, False, False]
    assert phi(a, a) == pytest.approx(1.0)
    assert phi(a, [not x for x in a]) == pytest.approx(-1.0)
    assert phi(a, [True, False, True, False]) == pytest.approx(0.0)
    # n11 = 2, n1. = 3, n.1 = 2, n = 5: (5*2 - 3*2) / sqrt(3*2*2*3) = 4/6.
    assert phi([True, True, True, False, False], [True, True, False, False, False]) == pytest.approx(4 / 6)
    assert phi([True, True], [True, False]) is None


def test_percentile_and_pareto_front() -> None:
    assert percentile([5, 1, 4, 2, 3], 95) == 5 and percentile([5, 1, 4, 2, 3], 50) == 3 and percentile([], 50) is None
    points = {"cheap": (0.7, 0.01), "best": (0.8, 0.05), "dominated": (0.6, 0.02), "twin": (0.7, 0.01)}
    assert pareto_front(points) == ["cheap", "twin", "best"]


def _outcome(task: str, arm: str, passed: bool, cost: float = 0.0) -> Outcome:
    return Outcome(task_id=task, arm=arm, passed=passed, reason="", run_id=f"run_{arm[-1]}{task}", cost=cost)


def test_summary_counts_oracle_regret_and_pairs_by_hand() -> None:
    fused = Arm("cfg", "fused", "panel")
    members = [Arm("cfg", "member", m) for m in ("a", "b", "c")]
    # Trials t1..t4. Right answers:     t1  t2  t3  t4
    table = {
        fused.label: [True, False, True, False],
        members[0].label: [True, True, False, False],
        members[1].label: [False, False, True, False],
        members[2].label: [True, False, False, False],
    }
    outcomes = [
        _outcome(f"t{i + 1}", label, passed, cost=0.01 if label == fused.label else 0.001)
        for label, row in table.items()
        for i, passed in enumerate(row)
    ]
    outcomes.append(_outcome("t5", fused.label, True))  # answered by one arm only: not a paired trial
    summary = summarise([fused, *members], outcomes, planned_trials=5)
    assert summary.trials == 4 and summary.planned_trials == 5
    panel = summary.arm(fused.label)
    assert (panel.passed, panel.n, panel.mean_cost) == (2, 4, pytest.approx(0.01))
    config = summary.configs[0]
    assert config.best_member == members[0].label  # 2/4, ahead of b and c (1/4 each)
    assert config.oracle_passed == 3  # t1, t2, t3 have a member right
    (regret,) = config.regrets
    assert [(f.task_id, [m.arm for m in right]) for f, right in regret.trials] == [("t2", [members[0].label])]
    ab = next(k for k in config.correlations if (k.a, k.b) == ("a", "b"))
    assert [x.task_id for x, _ in ab.both_failed] == ["t4"]
    (vs_best,) = summary.comparisons
    assert (vs_best.a, vs_best.b) == (fused.label, members[0].label)
    assert [x.task_id for x, _ in vs_best.a_only] == ["t3"] and [x.task_id for x, _ in vs_best.b_only] == ["t2"]
    assert vs_best.p_value == 1.0
    # a is as accurate as the panel and cheaper, and beats b and c: the cost front is a alone.
    assert summary.front_cost == [members[0].label]
