"""Median and 95th percentile, and the row every scenario reports them in.

    row = Row.of("router, panel of 3: end to end", "ms", latencies, floor=300, target="<= 315")

A row's `p95` is the tail that is worse: the 95th percentile for times and sizes, the 5th for
rates (a slower round has fewer requests per second). Percentiles are nearest-rank over the
measured values, so with few repeats p95 is the worst one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel

__all__ = ["Result", "Row", "percentile"]

Unit = Literal["ms", "s", "req/s", "MB"]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, `q` in [0, 100]."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


class Row(BaseModel):
    """One measured quantity: where it stands against its floor (ideal) and its target."""

    name: str
    unit: Unit
    n: int
    median: float
    p95: float
    floor: float | None = None
    floor_note: str | None = None
    target: str | None = None
    met: bool | None = None

    @classmethod
    def of(
        cls,
        name: str,
        unit: Unit,
        values: Sequence[float],
        *,
        floor: float | None = None,
        floor_note: str | None = None,
        target: str | None = None,
        met: bool | None = None,
    ) -> Row:
        higher_is_better = unit == "req/s"
        tail = percentile(values, 5 if higher_is_better else 95)
        digits = 1 if unit in ("req/s", "MB") else (3 if unit == "s" else 2)
        return cls(
            name=name,
            unit=unit,
            n=len(values),
            median=round(statistics.median(values), digits),
            p95=round(tail, digits),
            floor=None if floor is None else round(floor, digits),
            floor_note=floor_note,
            target=target,
            met=met,
        )


class Result(BaseModel):
    """What a scenario returns: its rows for the tables, and whatever else it measured."""

    rows: list[Row]
    details: dict[str, Any] = {}
