"""pareto.png: every arm's accuracy against its mean cost and its median latency, Pareto fronts drawn.

    drawn = draw_pareto(summary, Path("out/pareto.png"))   # False when matplotlib is not installed

Fused arms are filled circles, members alone hollow squares, one colour per config; the bar through
each point is its 95 % interval. The dashed line joins the arms no other beats on both axes: a
person reads off at a glance which configs are worth what they cost. matplotlib is imported here
only, and only when drawing; without it the report says the chart was not drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fusionkit_cli.eval.summary import ArmStats, Summary

__all__ = ["draw_pareto"]

_COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")


def _panel(ax: Any, arms: list[ArmStats], front: list[str], expense: str, colours: dict[str, str]) -> None:
    def x_of(s: ArmStats) -> float:
        return s.mean_cost if expense == "cost" else (s.latency_p50 or 0.0)

    for s in arms:
        x, y = x_of(s), 100 * s.accuracy
        err = [[y - 100 * s.interval.low], [100 * s.interval.high - y]]
        colour = colours[s.arm.config]
        fused = s.arm.kind == "fused"
        ax.errorbar(
            x,
            y,
            yerr=err,
            fmt="o" if fused else "s",
            color=colour,
            markerfacecolor=colour if fused else "white",
            markersize=8 if fused else 6,
            capsize=3,
            linewidth=1,
        )
        ax.annotate(s.arm.label, (x, y), textcoords="offset points", xytext=(6, 4), fontsize=7)
    on_front = sorted((s for s in arms if s.arm.label in front), key=x_of)
    if len(on_front) > 1:
        xs: list[float] = []
        ys: list[float] = []
        for s in on_front:
            if xs:
                xs.append(x_of(s))
                ys.append(ys[-1])
            xs.append(x_of(s))
            ys.append(100 * s.accuracy)
        ax.plot(xs, ys, linestyle="--", color="#333333", linewidth=1, label="Pareto front")
        ax.legend(loc="lower right", fontsize=8)
    if expense == "cost":
        ax.set_xlabel("mean cost per task (USD)")
        if all(s.mean_cost == 0 for s in arms):
            ax.text(0.5, 0.02, "no arm has a known cost (no pricing)", transform=ax.transAxes, ha="center", fontsize=8)
    else:
        ax.set_xlabel("latency p50 (ms)")
    ax.set_ylabel("accuracy (%), 95 % interval")
    ax.set_ylim(-2, 102)
    ax.margins(x=0.12)
    ax.grid(True, alpha=0.3)


def draw_pareto(summary: Summary, path: Path, title: str = "Quality against cost and latency") -> bool:
    """Draw the chart at `path`; False (and nothing written) when matplotlib is missing or nothing was measured."""
    try:
        import matplotlib
    except ImportError:
        return False
    if not summary.arms or not summary.trials:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = list(dict.fromkeys(s.arm.config for s in summary.arms))
    colours = {name: _COLOURS[i % len(_COLOURS)] for i, name in enumerate(configs)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.5))
    _panel(left, summary.arms, summary.front_cost, "cost", colours)
    _panel(right, summary.arms, summary.front_latency, "latency", colours)
    left.set_title("quality x cost", fontsize=10)
    right.set_title("quality x latency", fontsize=10)
    fig.suptitle(f"{title}: {summary.trials} trials; filled = fused, hollow = member alone", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
