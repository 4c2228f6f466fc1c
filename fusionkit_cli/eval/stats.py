"""The statistics of an eval report, in the standard library only.

    wilson(71, 100)                    # Interval(low=0.614, high=0.792): 95 % interval of a proportion
    mcnemar(a_only=12, b_only=3)       # exact two-sided p of a paired comparison (0.035)
    phi([True, False, ...], [...])     # correlation of two members' failures
    pareto_front({"a": (0.7, 0.01), "b": (0.8, 0.05), "c": (0.6, 0.02)})   # ['a', 'b']

Wilson's score interval rather than the normal approximation: it stays inside [0, 1] and is honest
for small samples and accuracies near 0 or 1. McNemar's test is the exact binomial form (no
continuity correction needed), on the tasks where exactly one of the two was right.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

__all__ = ["Z95", "Interval", "mcnemar", "pareto_front", "percentile", "phi", "wilson"]

Z95 = 1.959963984540054  # the two-sided 95 % quantile of the standard normal


@dataclass(frozen=True)
class Interval:
    low: float
    high: float


def wilson(successes: int, trials: int, z: float = Z95) -> Interval:
    """Wilson score interval of `successes` out of `trials` (0..1 for no trials)."""
    if trials <= 0:
        return Interval(0.0, 1.0)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    # At 0 or all successes the bound is exactly 0 or 1; rounding must not put it past the estimate.
    low = 0.0 if successes == 0 else min(p, max(0.0, centre - half))
    high = 1.0 if successes == trials else max(p, min(1.0, centre + half))
    return Interval(low, high)


def mcnemar(a_only: int, b_only: int) -> float:
    """Exact two-sided McNemar p-value: under "no difference" each discordant task is a fair coin."""
    n = a_only + b_only
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(a_only, b_only) + 1))
    return float(min(Fraction(1), Fraction(2 * tail, 2**n)))


def phi(a: Sequence[bool], b: Sequence[bool]) -> float | None:
    """Pearson correlation of two yes/no series (the phi coefficient); None when either never varies."""
    if len(a) != len(b):
        raise ValueError("the series differ in length")
    n11 = sum(1 for x, y in zip(a, b, strict=True) if x and y)
    n1_, n_1 = sum(a), sum(b)
    n = len(a)
    spread = n1_ * (n - n1_) * n_1 * (n - n_1)
    if spread == 0:
        return None
    return (n * n11 - n1_ * n_1) / math.sqrt(spread)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile, `q` in [0, 100]; None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def pareto_front(points: Mapping[str, tuple[float, float]]) -> list[str]:
    """The names whose (quality, expense) no other point beats: at least as good and as cheap, better in one.

    Listed from the cheapest up.
    """
    front = [
        name
        for name, (quality, expense) in points.items()
        if not any(
            q >= quality and e <= expense and (q > quality or e < expense)
            for other, (q, e) in points.items()
            if other != name
        )
    ]
    return sorted(front, key=lambda name: (points[name][1], -points[name][0]))
