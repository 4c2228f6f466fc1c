"""What the three doors share (`server.doors.launch`): a client that leaves mid-stream cancels the run,
and a run cancelled from elsewhere ends the stream with an error in the door's own shape."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from server.app import create_app
from server.clients import build_clients
from server.completions import ChunkWriter
from server.doors.messages_translate import MessageStream
from server.doors.responses_translate import ResponseStream
from server.store import RunStore
from tests.doors_helpers import Frame, sse_frames
from tests.held_calls import Hold
from tests.router_helpers import demo_endpoints, panel_config

ASK = "Should I compare Postgres and SQLite for a small web app?"
DOORS = {
    "chat": ("/v1/chat/completions", {"messages": [{"role": "user", "content": ASK}]}),
    "responses": ("/v1/responses", {"input": ASK}),
    "messages": ("/v1/messages", {"max_tokens": 256, "messages": [{"role": "user", "content": ASK}]}),
}
SLOW_PANEL = {name: {"latency_ms": 20_000} for name in ("fast", "careful", "structured")}


def slow_router(tmp_path: Path, live_server: Any) -> Any:
    config = panel_config(tmp_path, demo_endpoints(**SLOW_PANEL), judge_model="fast", synthesizer_model="careful")
    return live_server(create_app(config, keepalive_s=0.05))


def run_record(tmp_path: Path, run_id: str) -> Any:
    async def read() -> Any:
        store = RunStore(tmp_path / "runs.sqlite3")
        try:
            return await store.get_run(run_id)
        finally:
            await store.close()

    return asyncio.run(read())


def wait_for_end(tmp_path: Path, run_id: str, timeout_s: float = 15) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        record = run_record(tmp_path, run_id)
        if record.state in ("completed", "failed", "cancelled"):
            return record
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} did not end")


@pytest.mark.parametrize("door", list(DOORS))
def test_a_client_leaving_mid_stream_cancels_the_run(tmp_path: Path, live_server: Any, door: str) -> None:
    server = slow_router(tmp_path, live_server)
    path, body = DOORS[door]
    with httpx2.stream(
        "POST", server.url + path, json={"model": "fusionkit/panel", "stream": True, **body}, timeout=30
    ) as response:
        run_id = response.headers["x-fusion-run-id"]
        next(sse_frames(response))  # the stream is open; the panel is still thinking (20 s)
    record = wait_for_end(tmp_path, run_id)
    assert record.state == "cancelled" and record.terminal_reason == "client_disconnected"


def _last_error(frames: list[Frame], door: str) -> dict[str, Any] | None:
    last = frames[-1].data
    assert last is not None
    if door == "chat":
        return dict(last["error"])
    if door == "responses":
        assert frames[-1].event == "response.failed"
        return dict(last["response"]["error"])
    assert frames[-1].event == "error"
    return dict(last["error"])


@pytest.mark.parametrize("door", list(DOORS))
def test_a_run_cancelled_elsewhere_ends_the_stream_with_an_error(tmp_path: Path, live_server: Any, door: str) -> None:
    server = slow_router(tmp_path, live_server)
    path, body = DOORS[door]
    with httpx2.stream(
        "POST", server.url + path, json={"model": "fusionkit/panel", "stream": True, **body}, timeout=30
    ) as response:
        run_id = response.headers["x-fusion-run-id"]
        frames = sse_frames(response)
        seen = [next(frames)]
        assert httpx2.post(f"{server.url}/v1/fusion/runs/{run_id}/cancel", timeout=30).status_code == 200
        # Before, the stream went on sending keep-alives for a run that no longer existed.
        seen.extend(f for f in frames if f.data is not None)
    error = _last_error(seen, door)
    assert error is not None and "cancelled" in error["message"]
    assert run_record(tmp_path, run_id).terminal_reason == "cancel_requested"


def _ask_through_the_sdk(url: str, door: str) -> Any:
    """One non-streaming request through the door's official SDK, with its default retries."""
    if door == "messages":
        client = anthropic.Anthropic(base_url=url, api_key="x")
        return client.messages.create(model="fusionkit/panel", max_tokens=256, messages=DOORS[door][1]["messages"])
    openai_client = openai.OpenAI(base_url=url + "/v1", api_key="x")
    if door == "responses":
        return openai_client.responses.create(model="fusionkit/panel", input=ASK)
    return openai_client.chat.completions.create(model="fusionkit/panel", messages=DOORS[door][1]["messages"])


@pytest.mark.parametrize("door", list(DOORS))
def test_a_run_cancelled_while_a_plain_request_waits_answers_409_that_is_not_retried(
    tmp_path: Path, live_server: Any, door: str
) -> None:
    config = panel_config(tmp_path, demo_endpoints(), judge_model="fast", synthesizer_model="careful")
    clients = build_clients(config)
    hold = Hold()
    hold.endpoint(clients["structured"])
    server = live_server(create_app(config, clients=clients))
    outcome: dict[str, Any] = {}

    def ask() -> None:
        try:
            outcome["answer"] = _ask_through_the_sdk(server.url, door)
        except Exception as exc:
            outcome["error"] = exc

    waiter = threading.Thread(target=ask)
    waiter.start()
    try:
        hold.wait_for_calls(1)  # the run is mid-panel, its request waiting
        [run] = httpx2.get(f"{server.url}/v1/fusion/runs").json()["data"]
        assert httpx2.post(f"{server.url}/v1/fusion/runs/{run['run_id']}/cancel", timeout=30).status_code == 200
    finally:
        hold.release()  # a retried request (what the SDK did with the old 500) would now complete
        waiter.join(timeout=60)
    error = outcome.get("error")
    # Before, uvicorn answered a plain-text 500 and the SDK started the run again.
    assert isinstance(error, openai.ConflictError | anthropic.ConflictError), outcome
    assert error.response.headers["x-should-retry"] == "false"
    assert error.response.headers["x-fusion-run-id"] == run["run_id"]
    body = error.body if door == "messages" else {"error": error.body}
    if door == "messages":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    else:
        assert body["error"]["code"] == "run_cancelled" and body["error"]["run_id"] == run["run_id"]
    assert "cancelled" in body["error"]["message"]
    assert len(httpx2.get(f"{server.url}/v1/fusion/runs").json()["data"]) == 1  # no run started again


SYSTEM = "Answer briefly."
ASKED_THE_SAME = {
    "chat": (
        "/v1/chat/completions",
        {"max_tokens": 256, "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ASK}]},
    ),
    "responses": ("/v1/responses", {"instructions": SYSTEM, "input": ASK, "max_output_tokens": 256}),
    "messages": ("/v1/messages", {"system": SYSTEM, **DOORS["messages"][1]}),
}


@pytest.mark.parametrize("door", list(ASKED_THE_SAME))
def test_the_native_view_shows_what_any_door_asked(tmp_path: Path, live_server: Any, door: str) -> None:
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints(), judge_model="fast")))
    path, body = ASKED_THE_SAME[door]
    fusion = {"panel_models": ["fast", "careful"]}
    answer = httpx2.post(
        server.url + path, json={"model": "fusionkit/panel", "temperature": 0.3, "fusion": fusion, **body}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    run_id = answer.headers["x-fusion-run-id"]
    events = httpx2.get(f"{server.url}/v1/fusion/runs/{run_id}/events?limit=500").json()["events"]

    asked = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": ASK}]
    queued = events[0]["payload"]["request"]
    # Before, a Responses or Messages run showed no messages, no sampling and no fusion options here.
    assert queued["messages"] == asked
    assert queued["sampling"] == {"temperature": 0.3, "top_p": None, "max_tokens": 256, "seed": None}
    assert queued["requested_models"] == ["fast", "careful"]
    calls = [e["payload"]["model_call_record"] for e in events if e["event_type"] == "model_call_recorded"]
    assert calls and all(call["messages"] == asked for call in calls)


WRITERS = {"chat": ChunkWriter, "responses": ResponseStream, "messages": MessageStream}


@pytest.mark.parametrize("door", list(DOORS))
def test_a_writer_that_breaks_mid_stream_ends_it_with_an_error_and_a_log(
    tmp_path: Path, live_server: Any, door: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: Any, result: Any) -> list[bytes]:
        raise RuntimeError("a bug in the writer")

    monkeypatch.setattr(WRITERS[door], "finish", broken)
    server = live_server(create_app(panel_config(tmp_path, demo_endpoints(), judge_model="fast")))
    path, body = DOORS[door]
    with httpx2.stream(
        "POST", server.url + path, json={"model": "fusionkit/panel", "stream": True, **body}, timeout=30
    ) as response:
        run_id = response.headers["x-fusion-run-id"]
        frames = [f for f in sse_frames(response) if f.data is not None]
    # Before, the stream just stopped: no terminal event, nothing logged.
    error = _last_error(frames, door)
    assert error is not None and "could not be sent" in error["message"]
    if door == "chat":
        assert error["run_id"] == run_id
    assert any(r.getMessage() == "stream failed" and r.exc_info for r in caplog.records)
