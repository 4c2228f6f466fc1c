"""One fused request as one linked trace: router → bridge spans link, and every model call ends.

The router and three bridges (real servers, one trace directory) write fusion-trace-event.v1
lines; the test follows parent span ids from each bridge event back to the run's root.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bridge.app import create_app as create_bridge
from bridge.endpoint import EndpointConfig
from bridge.tracing import trace_file_name
from server.app import create_app
from tests.router_helpers import demo_endpoints, panel_config

QUESTION = [{"role": "user", "content": "Compare two ways to cache a web page"}]


def _trace(directory: Path, trace_id: str) -> list[dict[str, Any]]:
    path = directory / trace_file_name(trace_id)
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("stream", [False, True])
def test_bridge_spans_hang_under_the_routers_model_calls(
    tmp_path: Path, live_server: Any, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    traces = tmp_path / "traces"
    monkeypatch.setenv("FUSION_TRACE_DIR", str(traces))
    endpoints = demo_endpoints(structured={"fail_rate": 1.0})
    bridges = {e["id"]: live_server(create_bridge(EndpointConfig.model_validate(e))).url for e in endpoints}
    router = live_server(create_app(panel_config(tmp_path, endpoints, judge_model="careful"), bridges=bridges))
    trace_id = "linked-trace-1"
    answer = httpx2.post(
        router.url + "/v1/chat/completions",
        json={"model": "fusionkit/panel", "messages": QUESTION, "stream": stream},
        headers={"x-fusion-trace-id": trace_id},
    )
    assert answer.status_code == 200

    events = _events_when_complete(traces, trace_id, bridge_calls=7)
    [root] = [e for e in events if e["event_type"] == "run.started"]
    assert root["parent_span_id"] is None and root["component"] == "router"

    router_calls = [e for e in events if e["component"] != "bridge" and e["event_type"].startswith("model.call.")]
    bridge_calls = [e for e in events if e["component"] == "bridge"]
    assert {e["parent_span_id"] for e in router_calls} == {root["span_id"]}
    # Every bridge event names as its parent a span the router did emit: its model call.
    calls = {e["span_id"]: e for e in router_calls if e["event_type"] == "model.call.started"}
    for event in bridge_calls:
        assert calls[event["parent_span_id"]]["model_id"] == event["model_id"]

    finished = [e for e in bridge_calls if e["event_type"] == "model.call.finished"]
    started = [e for e in bridge_calls if e["event_type"] == "model.call.started"]
    # Two members, the judge and the synthesizer answer; the failing member is tried three times (the
    # router retries a 502), each attempt a child of the same router call. Every call begun also ended.
    assert len(started) == len(finished) == 7
    ok = [e["payload"] for e in finished if "error" not in e["payload"]]
    failed = [e for e in finished if "error" in e["payload"]]
    assert len(ok) == 4 and all(p["finish_reason"] == "stop" and p["tool_call_count"] == 0 for p in ok)
    assert all(p["usage"]["total_tokens"] > 0 and p["latency_ms"] >= 0 for p in ok)
    assert len(failed) == 3 and {e["model_id"] for e in failed} == {"structured"}
    assert {e["payload"]["status"] for e in failed} == {502} and len({e["parent_span_id"] for e in failed}) == 1


def _events_when_complete(directory: Path, trace_id: str, bridge_calls: int) -> list[dict[str, Any]]:
    """The trace once the run's completion and every bridge call's end are on disk (written in the background)."""
    deadline = time.monotonic() + 10
    while True:
        path = directory / trace_file_name(trace_id)
        events = _trace(directory, trace_id) if path.exists() else []
        completed = any(e["event_type"] == "run.state" and e["payload"].get("state") == "completed" for e in events)
        ended = sum(1 for e in events if e["component"] == "bridge" and e["event_type"] == "model.call.finished")
        if completed and ended >= bridge_calls:
            return events
        assert time.monotonic() < deadline, f"the trace never completed: {[e['event_type'] for e in events]}"
        time.sleep(0.05)
