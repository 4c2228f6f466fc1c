"""pareto.png: every arm's accuracy against its mean cost and its median latency, Pareto fronts drawn.

    drawn = draw_pareto(summary, Path("out/pareto.png"))   # False when matplotlib is not installed

Fused arms are filled circles, members alone hollow squares, one colour per config; the bar through
each point is its 95 % interval; each point's number is named in the legend below. The dashed line
joins the arms no other beats on both axes: a person reads off at a glance which configs are worth
what they cost. matplotlib is imported here only, and only when drawing; without it the report says
the chart was not drawn.
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

    for number, s in enumerate(arms, start=1):
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
        # A number, not the label: points crowd, and the legend below names each number.
        ax.annotate(str(number), (x, y), textcoords="offset points", xytext=(5, 3), fontsize=8, color=colour)
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
    low = min(100 * s.interval.low for s in arms)
    high = max(100 * s.interval.high for s in arms)
    ax.set_ylim(max(-2, low - 8), min(102, high + 5))
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
    from matplotlib.lines import Line2D

    configs = list(dict.fromkeys(s.arm.config for s in summary.arms))
    colours = {name: _COLOURS[i % len(_COLOURS)] for i, name in enumerate(configs)}
    rows = (len(summary.arms) + 1) // 2
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5 + 0.22 * rows))
    _panel(left, summary.arms, summary.front_cost, "cost", colours)
    _panel(right, summary.arms, summary.front_latency, "latency", colours)
    left.set_title("quality x cost", fontsize=10)
    right.set_title("quality x latency", fontsize=10)
    fig.suptitle(f"{title}: {summary.trials} trials; filled = fused, hollow = member alone", fontsize=11)
    names = [f"{n}  {s.arm.label}: {100 * s.accuracy:.1f} %" for n, s in enumerate(summary.arms, start=1)]
    handles = [
        Line2D(
            [],
            [],
            marker="o" if s.arm.kind == "fused" else "s",
            linestyle="",
            color=colours[s.arm.config],
            markerfacecolor=colours[s.arm.config] if s.arm.kind == "fused" else "white",
        )
        for s in summary.arms
    ]
    fig.legend(handles, names, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.045 * rows + 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
