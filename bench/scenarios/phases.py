"""Where a recorded run spent its time, read back from its events (`GET /v1/fusion/runs/{id}/events`).

    events = fetch_events(router_url, run_id)
    calls = model_calls(events)        # one Call per model call: role, endpoint, start and end in ms
    gaps = phase_gaps(events)          # the router's own time before, between and after the phases

Times are milliseconds since the run was created (its first event). The store stamps events to
the millisecond, so one run's gaps are coarse; medians over many runs are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx2

__all__ = ["Call", "fetch_events", "model_calls", "phase_gaps", "recent_run_ids", "run_span_ms"]

Event = dict[str, Any]


@dataclass(frozen=True)
class Call:
    role: str
    endpoint_id: str
    start_ms: float
    end_ms: float
    failed: bool

    @property
    def label(self) -> str:
        return f"{self.role}: {self.endpoint_id}"


def recent_run_ids(router_url: str, count: int) -> list[str]:
    """The ids of the router's `count` most recent runs, oldest first."""
    answer = httpx2.get(f"{router_url}/v1/fusion/runs", params={"limit": count}, timeout=10)
    answer.raise_for_status()
    return [run["run_id"] for run in reversed(answer.json()["data"])]


def fetch_events(router_url: str, run_id: str) -> list[Event]:
    events: list[Event] = []
    after = 0
    while True:
        answer = httpx2.get(
            f"{router_url}/v1/fusion/runs/{run_id}/events", params={"after": after, "limit": 1000}, timeout=10
        )
        answer.raise_for_status()
        page = answer.json()
        # Each event in the seed's shape carries ours (type and payload) under `payload.fusionkit`.
        events += [
            {
                "seq": e["event_seq"],
                "ts": e["created_at"],
                "type": e["payload"]["fusionkit"]["type"],
                "payload": e["payload"]["fusionkit"]["payload"],
            }
            for e in page["events"]
        ]
        if not page["has_more"]:
            return events
        after = page["next_event_cursor"]


def _clock(events: list[Event]) -> tuple[dict[int, float], float]:
    stamps = {e["seq"]: datetime.fromisoformat(e["ts"]).timestamp() * 1000 for e in events}
    return stamps, min(stamps.values())


def model_calls(events: list[Event]) -> list[Call]:
    stamps, start = _clock(events)
    opened: dict[int, tuple[str, str, float]] = {}
    calls = []
    for event in events:
        payload = event["payload"]
        at = stamps[event["seq"]] - start
        if event["type"] == "model_call.started":
            opened[payload["call"]] = (payload["role"], payload["endpoint_id"], at)
        elif event["type"] in ("model_call.completed", "model_call.failed") and payload["call"] in opened:
            role, endpoint_id, began = opened.pop(payload["call"])
            calls.append(Call(role, endpoint_id, began, at, event["type"] == "model_call.failed"))
    return calls


def run_span_ms(events: list[Event]) -> float:
    """From the run's creation to its last event (the `completed` transition)."""
    stamps, start = _clock(events)
    return max(stamps.values()) - start


def phase_gaps(events: list[Event]) -> dict[str, float]:
    """The router's own time around a judged-and-synthesized run's three phases, in ms."""
    calls = model_calls(events)
    panel = [c for c in calls if c.role == "panel"]
    judge = next(c for c in calls if c.role == "judge")
    synth = next(c for c in calls if c.role == "synthesizer")
    panel_done = max(c.end_ms for c in panel)
    return {
        "run created -> first panel call": min(c.start_ms for c in panel),
        "panel": panel_done - min(c.start_ms for c in panel),
        "last panel answer -> judge call": judge.start_ms - panel_done,
        "judge": judge.end_ms - judge.start_ms,
        "judge answer -> synthesizer call": synth.start_ms - judge.end_ms,
        "synthesizer": synth.end_ms - synth.start_ms,
        "synthesizer answer -> run completed": run_span_ms(events) - synth.end_ms,
    }
