"""The router's span exporter process (server/observe/exporter.py): the router writes its spans down as
records and a child process exports them over OTLP/HTTP with the SDK. Spans arrive whole and in order,
and the child never outlives its router, however the router ends."""

from __future__ import annotations

import itertools
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx2
import openai
import psutil
import pytest
import yaml

from bench.procs import wait_healthy
from server.app import create_app
from tests.livesrv import LiveServer, free_port
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan
from tests.router_helpers import demo_endpoints, mock_endpoint, panel_config
from tests.up_helpers import ROOT, exporters_of, wait_until

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{CLIENT_TRACE}-00f067aa0ba902b7-01"
QUESTION = [{"role": "user", "content": "Compare write-through and write-back caching."}]


def run_spans(trace_id: str) -> Callable[[list[ReceivedSpan]], bool]:
    """Enough when a whole panel run of `trace_id` has arrived: the run, 3 phases, 5 model calls."""
    return lambda spans: sum(s.trace_id == trace_id for s in spans) == 9


def otel_config(tmp_path: Path, collector: str, endpoints: list[dict[str, Any]]) -> Any:
    return panel_config(
        tmp_path,
        endpoints,
        judge_model="careful",
        synthesizer_model="careful",
        server={"otel": {"endpoint": collector}},
    )


def test_a_runs_spans_reach_the_collector_nested_in_time_and_the_helper_ends_with_the_router(
    tmp_path: Path, live_server: Callable[[Any], LiveServer]
) -> None:
    receiver = OtlpReceiver()
    collector = live_server(receiver.app()).url
    app = create_app(otel_config(tmp_path, collector, demo_endpoints()))
    with LiveServer(app) as router:
        (helper,) = exporters_of(os.getpid())
        client = openai.OpenAI(base_url=f"{router.url}/v1", api_key="x", max_retries=0)
        reply = client.chat.completions.create(
            model="fusionkit/panel", messages=QUESTION, extra_headers={"traceparent": TRACEPARENT}
        )
        assert reply.model_extra["fusionkit"]["trace_id"] == CLIENT_TRACE
    # The router stopped: its helper exported what it held (the batching delay is 5 s; this is sooner) and left.
    helper.wait(timeout=10)
    spans = receiver.wait_for(run_spans(CLIENT_TRACE), timeout_s=1)
    by_id = {s.span_id: s for s in spans}
    (root,) = [s for s in spans if s.name == "invoke_workflow fusionkit/panel"]
    assert root.service == "fusionkit-router" and root.attributes["fusionkit.state"] == "completed"
    # Recorded as the run went and replayed later, each span keeps its own times: a child within its parent.
    for span in spans:
        assert 0 < span.start_ns <= span.end_ns
        if span is not root:
            parent = by_id[span.parent_span_id]
            assert parent.start_ns <= span.start_ns and span.end_ns <= parent.end_ns, (span.name, parent.name)
    phases = sorted((s for s in spans if s.parent_span_id == root.span_id), key=lambda s: s.start_ns)
    assert [p.name for p in phases] == ["generating", "judging", "synthesizing"]
    assert all(a.end_ns <= b.start_ns for a, b in itertools.pairwise(phases))


def test_a_router_killed_outright_leaves_no_helper_and_loses_no_finished_run(tmp_path: Path) -> None:
    receiver = OtlpReceiver()
    with LiveServer(receiver.app()) as collector:
        config = _config_file(tmp_path, collector.url)
        port = free_port()
        router = subprocess.Popen(
            [sys.executable, "-m", "fusionkit_cli.main", "serve", "--config", str(config), "--port", str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        helpers: list[psutil.Process] = []
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, router)
            helpers = exporters_of(router.pid)
            assert len(helpers) == 1
            reply = httpx2.post(
                f"{url}/v1/chat/completions",
                json={"model": "fusionkit/panel", "messages": QUESTION},
                headers={"traceparent": TRACEPARENT},
                timeout=30,
            )
            assert reply.status_code == 200
            # The run's records go down the pipe 50 ms after it ends (FLUSH_S); a second is ample...
            time.sleep(1)
            router.kill()  # ...then the router dies (SIGKILL) with no chance to close anything
            router.wait(timeout=10)
            helpers[0].wait(timeout=15)  # its stdin closed with the router: it exports and exits
            receiver.wait_for(run_spans(CLIENT_TRACE), timeout_s=1)
        finally:
            router.kill()
            router.wait(timeout=10)
            for helper in helpers:
                if helper.is_running():
                    helper.kill()


def test_without_its_helper_a_router_drops_spans_says_so_once_and_keeps_answering(
    tmp_path: Path, live_server: Callable[[Any], LiveServer], caplog: pytest.LogCaptureFixture
) -> None:
    config = otel_config(tmp_path, "http://127.0.0.1:9", [mock_endpoint("careful")])
    caplog.set_level(logging.WARNING, logger="fusionkit.otel")
    url = live_server(create_app(config)).url
    (helper,) = exporters_of(os.getpid())
    helper.kill()
    helper.wait(timeout=10)
    for _ in range(3):
        response = httpx2.post(f"{url}/v1/chat/completions", json={"model": "careful", "messages": QUESTION})
        assert response.status_code == 200
        assert wait_until(lambda: any("spans are dropped" in r.getMessage() for r in caplog.records))
    warnings = [r.getMessage() for r in caplog.records if "spans are dropped" in r.getMessage()]
    # Said once, for the first run's three spans (the run, its phase, its call), not once a run.
    assert warnings == ["the span exporter process is not running: spans are dropped (the first 3 now)"]


def test_the_helper_logs_in_the_routers_format(tmp_path: Path) -> None:
    """With `--log-format json` every line on the router's stderr is JSON, the helper's warnings included
    (here: the collector is down, so exports fail)."""
    config = _config_file(tmp_path, "http://127.0.0.1:9")
    port = free_port()
    env = {**os.environ, "OTEL_BSP_SCHEDULE_DELAY": "50", "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
    serve = ["serve", "--config", str(config), "--port", str(port), "--log-format", "json"]
    router = subprocess.Popen(
        [sys.executable, "-m", "fusionkit_cli.main", *serve],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, router)
        reply = httpx2.post(f"{url}/v1/chat/completions", json={"model": "careful", "messages": QUESTION}, timeout=30)
        assert reply.status_code == 200
        time.sleep(1.5)  # the helper's batch is due after 50 ms; its export fails and is retried, warning each time
    finally:
        router.terminate()
        _, stderr = router.communicate(timeout=30)
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]  # every line is JSON
    exporter_lines = [line for line in lines if line["logger"].startswith("opentelemetry.exporter")]
    assert any("Failed to export" in line["message"] for line in exporter_lines), lines


def _config_file(tmp_path: Path, collector: str) -> Path:
    config = tmp_path / "panel.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "endpoints": demo_endpoints(),
                "default_mode": "panel",
                "judge_model": "careful",
                "synthesizer_model": "careful",
                "server": {"run_store": str(tmp_path / "runs.sqlite3"), "otel": {"endpoint": collector}},
            }
        )
    )
    return config
