"""A picture of where one fused request spends its time, drawn from the run's recorded events.

    phase_chart(events, Path("bench/results/fused-request-phases.png"))

Each model call (panel members, judge, synthesizer) is a bar on a time axis; the top row is the
whole run, with the router's own time (no model call under way) marked in red. matplotlib is
imported here only, so the suite runs without it until a chart is drawn (`pip install .[bench]`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.scenarios.phases import Call, model_calls, run_span_ms

__all__ = ["idle_spans", "phase_chart"]

COLOURS = {"panel": "#4C72B0", "judge": "#DD8452", "synthesizer": "#55A868", "verifier": "#8172B3"}
ROUTER = "#C44E52"


def idle_spans(calls: list[Call], span_ms: float) -> list[tuple[float, float]]:
    """The stretches of the run during which no model call was under way: the router's own time."""
    spans, cursor = [], 0.0
    for call in sorted(calls, key=lambda c: c.start_ms):
        if call.start_ms > cursor:
            spans.append((cursor, call.start_ms))
        cursor = max(cursor, call.end_ms)
    if span_ms > cursor:
        spans.append((cursor, span_ms))
    return spans


def phase_chart(
    events: list[dict[str, Any]], path: Path, title: str = "One fused request", upstream_ms: float | None = None
) -> None:
    """Draw the run's model calls; with `upstream_ms` (the upstreams' own latency), each call's time beyond
    it (building the request, HTTP, parsing, recording) is hatched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    calls = model_calls(events)
    total = run_span_ms(events)
    idle = idle_spans(calls, total)
    idle_ms = sum(end - start for start, end in idle)

    fig, ax = plt.subplots(figsize=(9, 0.55 * (len(calls) + 1) + 2.5))
    ax.barh(0, total, color="#DDDDDD", height=0.6)
    for start, end in idle:
        ax.barh(0, max(end - start, total * 0.002), left=start, color=ROUTER, height=0.6)
    ax.text(total * 1.01, 0, f"{total:.0f} ms", va="center", fontsize=8)
    for row, call in enumerate(calls, start=1):
        colour = COLOURS.get(call.role, "grey")
        ax.barh(row, call.end_ms - call.start_ms, left=call.start_ms, color=colour, height=0.6)
        if upstream_ms is not None and call.end_ms - call.start_ms > upstream_ms:
            extra = call.end_ms - call.start_ms - upstream_ms
            ax.barh(
                row, extra, left=call.start_ms + upstream_ms, height=0.6, color="white", hatch="////", edgecolor=colour
            )
        note = " (failed)" if call.failed else ""
        ax.text(call.end_ms + total * 0.01, row, f"{call.end_ms - call.start_ms:.0f} ms{note}", va="center", fontsize=8)
    ax.set_yticks(range(len(calls) + 1), ["the run (router)", *(c.label for c in calls)])
    ax.invert_yaxis()
    ax.set_xlabel("ms since the run was created")
    ax.set_xlim(0, total * 1.12)
    ax.grid(axis="x", color="#EEEEEE")
    ax.set_axisbelow(True)
    ax.set_title(
        f"{title}: {total:.0f} ms from run created to completed\n"
        f"model calls under way for {total - idle_ms:.0f} ms; the router alone for {idle_ms:.0f} ms",
        fontsize=10,
    )
    legend = [Patch(color=c, label=role) for role, c in COLOURS.items() if any(x.role == role for x in calls)]
    legend.append(Patch(color=ROUTER, label="router alone (no model call under way)"))
    if upstream_ms is not None:
        legend.append(
            Patch(
                facecolor="white",
                edgecolor="grey",
                hatch="////",
                label=f"call beyond the upstream's {upstream_ms:.0f} ms",
            )
        )
    ax.legend(handles=legend, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3, fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
