"""Shared by the front-door suites: a router over the demo's mock members, request fixtures shaped like
real agent captures, reading a run back from the store, and reading raw SSE frames as they arrive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2

from server.app import create_app
from server.run_views import read_run
from server.store import EventRecord, RunStore
from tests.router_helpers import demo_endpoints, panel_config

FIXTURES = Path(__file__).parent / "fixtures" / "doors"
SLOW_SYNTH = {"careful": {"tokens_per_s": 40}}  # the synthesizer paces its tokens; the panel answers at once


def router(tmp_path: Path, live_server: Any, endpoints: list[dict[str, Any]] | None = None, **settings: Any) -> Any:
    """A live router over `endpoints` (the demo's mock members), `fast` judging and `careful` writing unless
    `settings` (panel_config's) say otherwise."""
    settings.setdefault("judge_model", "fast")
    settings.setdefault("synthesizer_model", "careful")
    return live_server(create_app(panel_config(tmp_path, endpoints or demo_endpoints(), **settings)))


def fixture(name: str) -> dict[str, Any]:
    return dict(json.loads((FIXTURES / name).read_text()))


def run_events(store_path: Path, run_id: str) -> list[EventRecord]:
    async def read() -> list[EventRecord]:
        store = RunStore(store_path)
        try:
            return await store.events(run_id, after=0, limit=1000)
        finally:
            await store.close()

    return asyncio.run(read())


def inspection(store_path: Path, run_id: str) -> dict[str, Any]:
    """The run's inspection as `GET .../inspect` answers it (our details are under `fusionkit`)."""

    async def read() -> dict[str, Any]:
        store = RunStore(store_path)
        try:
            record = await store.get_run(run_id)
            assert record is not None
            view = await read_run(store, record, {})
            return (await view.inspection(store)).model_dump(mode="json")
        finally:
            await store.close()

    return asyncio.run(read())


def synthesizer_finished(store_path: Path, run_id: str) -> bool:
    """Whether the run's record already says the synthesizer's call (or the whole run) completed."""
    return any(
        (e.type == "model_call.completed" and e.payload.get("role") == "synthesizer")
        or (e.type == "run.state" and e.payload.get("state") == "completed")
        for e in run_events(store_path, run_id)
    )


def model_call_usage(store_path: Path, run_id: str) -> tuple[int, int]:
    """(prompt, completion) tokens summed over every completed model call of a run."""
    calls = [e.payload["usage"] for e in run_events(store_path, run_id) if e.type == "model_call.completed"]
    return sum(u["prompt_tokens"] for u in calls), sum(u["completion_tokens"] for u in calls)


@dataclass
class Frame:
    event: str | None  # the `event:` line, None for a comment-only frame
    data: dict[str, Any] | None
    comment: str | None = None


def sse_frames(response: httpx2.Response) -> Iterator[Frame]:
    """The SSE frames of a streaming response, each as soon as its blank line arrives."""
    event: str | None = None
    data: list[str] = []
    comment: str | None = None
    for line in response.iter_lines():
        if line == "":
            if event is not None or data or comment is not None:
                yield Frame(event, json.loads("".join(data)) if data else None, comment)
            event, data, comment = None, [], None
        elif line.startswith(":"):
            comment = line[1:].strip()
        elif line.startswith("event:"):
            event = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data.append(line.partition(":")[2].strip())


def collapse(types: list[str]) -> list[str]:
    """Consecutive repeats as one entry marked `+` (`delta+`), so an order can be asserted exactly."""
    out: list[str] = []
    for kind in types:
        if out and out[-1].rstrip("+") == kind:
            out[-1] = kind + "+"
        else:
            out.append(kind)
    return out
