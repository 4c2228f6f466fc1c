"""The trace emitter (SPEC §12): JSONL files per trace id, a real HTTP collector on loopback, a full
queue that drops and counts, hostile trace ids that stay inside the directory, and the disabled no-op."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from bridge.tracing import TRACE_SCHEMA, TraceEmitter, TraceEvent, new_span_id, new_trace_id, trace_file_name
from tests.livesrv import LiveServer


class Collector:
    """A trace collector that records what it is sent and can hold every request until released."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/ingest")
        def ingest(event: dict[str, Any]) -> dict[str, bool]:  # sync: runs on a worker thread, so it may block
            self.events.append(event)
            self.arrived.set()
            self.release.wait(timeout=30)
            return {"ok": True}

        return app


def read_trace(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


async def until(condition: Any, what: str) -> None:
    """Wait for the emitter's background task to get somewhere; no assertion on how long it took."""
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_jsonl_files_hold_one_trace_each_with_valid_events_in_order(tmp_path: Path) -> None:
    tracer = TraceEmitter(directory=tmp_path / "traces")
    await tracer.start()
    traces = [new_trace_id(), new_trace_id()]
    root = new_span_id()
    for i in range(3):
        for trace_id in traces:
            tracer.emit(
                trace_id=trace_id,
                span_id=new_span_id(),
                parent_span_id=root,
                component="panel-model",
                event_type="model_call.completed",
                candidate_id=f"c{i}",
                model_id="fast",
                payload={"i": i, "when": datetime(2024, 1, 1)},
            )
    await tracer.aclose()

    assert tracer.dropped == 0
    assert files_under(tmp_path) == sorted(tmp_path / "traces" / f"{t}.jsonl" for t in traces)
    for trace_id in traces:
        events = read_trace(tmp_path / "traces" / f"{trace_id}.jsonl")
        assert [e["seq"] for e in events] == [1, 2, 3]
        assert [e["payload"]["i"] for e in events] == [0, 1, 2]
        for event in events:
            assert event["schema"] == TRACE_SCHEMA
            assert TraceEvent.model_validate(event).trace_id == trace_id
            assert (event["component"], event["parent_span_id"], event["model_id"]) == ("panel-model", root, "fast")
            assert datetime.fromisoformat(event["ts"]).utcoffset() == timedelta(0)
        assert events[0]["payload"]["when"] == "2024-01-01 00:00:00"  # not JSON: recorded as its text


async def test_credentials_in_payloads_are_redacted(tmp_path: Path) -> None:
    tracer = TraceEmitter(directory=tmp_path)
    await tracer.start()
    trace_id = new_trace_id()
    tracer.emit(
        trace_id=trace_id,
        component="bridge",
        event_type="bridge.request",
        payload={
            "headers": {"Authorization": "Bearer sk-one", "X-Api-Key": "sk-two", "content-type": "application/json"},
            "calls": [{"x-goog-api-key": "sk-three", "api-key": "sk-four"}],
        },
    )
    await tracer.aclose()
    text = (tmp_path / f"{trace_id}.jsonl").read_text()
    assert not any(secret in text for secret in ("sk-one", "sk-two", "sk-three", "sk-four"))
    payload = read_trace(tmp_path / f"{trace_id}.jsonl")[0]["payload"]
    assert payload["headers"] == {
        "Authorization": "[redacted]",
        "X-Api-Key": "[redacted]",
        "content-type": "application/json",
    }


async def test_events_are_posted_to_a_live_collector(live_server: Any) -> None:
    collector = Collector()
    server: LiveServer = live_server(collector.app())
    tracer = TraceEmitter(url=server.url + "/ingest")
    trace_id = new_trace_id()
    tracer.emit(trace_id=trace_id, component="router", event_type="run.created", payload={"run_id": "r"})
    await tracer.start()  # what was emitted before start waits in the queue
    for state in ("generating", "judging", "synthesizing", "completed"):
        tracer.emit(trace_id=trace_id, component="router", event_type="run.state", payload={"state": state})
    await tracer.aclose(flush_s=10)

    assert tracer.dropped == 0
    assert [e["seq"] for e in collector.events] == [1, 2, 3, 4, 5]
    assert [e["event_type"] for e in collector.events] == ["run.created"] + ["run.state"] * 4
    assert all(TraceEvent.model_validate(e).trace_id == trace_id for e in collector.events)


async def test_a_full_queue_drops_and_counts_instead_of_waiting(live_server: Any) -> None:
    collector = Collector()
    collector.release.clear()
    server: LiveServer = live_server(collector.app())
    tracer = TraceEmitter(url=server.url + "/ingest", queue_size=2)
    await tracer.start()
    trace_id = new_trace_id()
    tracer.emit(trace_id=trace_id, component="judge", event_type="judge.record")
    # The background task now holds event 1 in a POST the collector will not answer yet.
    assert await asyncio.to_thread(collector.arrived.wait, 10)
    for _ in range(10):
        tracer.emit(trace_id=trace_id, component="judge", event_type="judge.record")
    assert tracer.dropped == 8  # two fit in the queue; emit returned every time
    collector.release.set()
    await tracer.aclose(flush_s=10)
    assert [e["seq"] for e in collector.events] == [1, 2, 3]
    assert tracer.dropped == 8


async def test_a_stuck_collector_does_not_hold_up_the_files(tmp_path: Path, live_server: Any) -> None:
    collector = Collector()
    collector.release.clear()
    server: LiveServer = live_server(collector.app())
    tracer = TraceEmitter(directory=tmp_path, url=server.url + "/ingest")
    await tracer.start()
    trace_id = new_trace_id()
    for _ in range(3):
        tracer.emit(trace_id=trace_id, component="synthesis", event_type="synthesis.completed")
    assert await asyncio.to_thread(collector.arrived.wait, 10)  # the first POST is now held
    path = tmp_path / f"{trace_id}.jsonl"
    await until(lambda: path.exists() and len(read_trace(path)) == 3, "three events in the trace file")
    assert len(collector.events) == 1  # the collector still holds the first POST
    collector.release.set()
    await tracer.aclose(flush_s=10)
    assert len(collector.events) == 3 and tracer.dropped == 0


@pytest.mark.parametrize("hostile", ["../../etc/passwd", "/etc/passwd", "a/b", "..", ".", "", "x" * 300, "nul\0byte"])
async def test_hostile_trace_ids_never_leave_the_directory(tmp_path: Path, hostile: str) -> None:
    directory = tmp_path / "a" / "b" / "traces"
    tracer = TraceEmitter(directory=directory)
    await tracer.start()
    tracer.emit(trace_id=hostile, component="bridge", event_type="bridge.request")
    await tracer.aclose()

    written = files_under(tmp_path)
    assert written == [directory / trace_file_name(hostile)]
    assert read_trace(written[0])[0]["trace_id"] == hostile  # the id is kept, only the file name is derived
    assert not (tmp_path / "a" / "etc").exists()


def test_file_names_never_collide_between_safe_and_hashed_ids() -> None:
    safe = new_trace_id()
    assert trace_file_name(safe) == f"{safe}.jsonl"
    hashed = trace_file_name("../x")
    assert "/" not in hashed and hashed.count(".") == 2
    assert trace_file_name("../x") == hashed != trace_file_name("../y")


async def test_without_a_destination_the_emitter_is_a_no_op(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FUSION_TRACE_DIR", raising=False)
    monkeypatch.delenv("FUSION_TRACE_URL", raising=False)
    tracer = TraceEmitter.from_env()
    assert not tracer.enabled
    await tracer.start()
    tracer.emit(trace_id="t", component="router", event_type="run.created", payload={"x": 1})
    await tracer.aclose()
    assert tracer.dropped == 0 and files_under(tmp_path) == []

    monkeypatch.setenv("FUSION_TRACE_DIR", str(tmp_path / "traces"))
    enabled = TraceEmitter.from_env()
    assert enabled.enabled and enabled.directory == tmp_path / "traces" and enabled.url is None


async def test_a_malformed_event_is_dropped_not_raised(tmp_path: Path) -> None:
    tracer = TraceEmitter(directory=tmp_path)
    await tracer.start()
    tracer.emit(trace_id="t", component="nonsense", event_type="x")  # type: ignore[arg-type]
    tracer.emit(trace_id="t", component="router", event_type="ok")
    await tracer.aclose()
    assert tracer.dropped == 1
    assert [e["event_type"] for e in read_trace(tmp_path / "t.jsonl")] == ["ok"]
    tracer.emit(trace_id="t", component="router", event_type="after close")
    assert tracer.dropped == 2
