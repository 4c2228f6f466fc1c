"""A picture of where one fused request spends its time: each model call as a bar on a time axis,
drawn from the run's recorded events (model_call.started / .completed carry ts, role, endpoint)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["phase_chart"]

COLOURS = {"panel": "#4C72B0", "judge": "#DD8452", "synthesizer": "#55A868", "verifier": "#8172B3"}


def _bars(events: list[dict[str, Any]]) -> tuple[list[tuple[str, str, float, float]], float]:
    stamp = {e["seq"]: datetime.fromisoformat(e["ts"]).timestamp() for e in events}
    start = min(stamp.values())
    opened: dict[int, tuple[str, float]] = {}
    bars = []
    for event in events:
        payload = event["payload"]
        if event["type"] == "model_call.started":
            opened[payload["call"]] = (f"{payload['role']}: {payload['endpoint_id']}", stamp[event["seq"]] - start)
        elif event["type"] in ("model_call.completed", "model_call.failed") and payload["call"] in opened:
            label, began = opened.pop(payload["call"])
            bars.append((label, payload["role"], began * 1000, (stamp[event["seq"]] - start) * 1000))
    return bars, (max(stamp.values()) - start) * 1000


def phase_chart(events: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bars, total = _bars(events)
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(bars) + 1.5))
    for row, (_label, role, began, ended) in enumerate(bars):
        ax.barh(row, ended - began, left=began, color=COLOURS.get(role, "grey"))
        ax.text(ended + total * 0.01, row, f"{ended - began:.0f} ms", va="center", fontsize=8)
    ax.set_yticks(range(len(bars)), [b[0] for b in bars])
    ax.invert_yaxis()
    ax.set_xlabel("ms since the run was created")
    ax.set_xlim(0, total * 1.12)
    ax.set_title(f"One fused request (panel of 3 over 100 ms upstreams): {total:.0f} ms in all")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
