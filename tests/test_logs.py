"""`--log-format json`: every line a server writes parses as one JSON object, the access fields as keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx2

from bench.procs import free_port, stop, wait_healthy


def test_every_log_line_of_a_bridge_is_a_json_object_with_the_access_fields(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "bridge.log"
    args = ["-m", "fusionkit_cli.main", "serve-endpoint", "--id", "m", "--provider", "mock", "--model", "mock-1"]
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, *args, "--port", str(port), "--log-format", "json"], stderr=err)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc)
            answer = httpx2.post(
                url + "/v1/chat/completions",
                json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
                headers={"x-fusion-trace-id": "trace-1"},
            )
            assert answer.status_code == 200
        finally:
            stop(proc)
    lines = [json.loads(line) for line in log.read_text().splitlines()]  # each line parses, or this raises
    assert lines and all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    [access] = [line for line in lines if line.get("path") == "/v1/chat/completions"]
    assert access["logger"] == "fusionkit.access" and access["method"] == "POST" and access["status"] == 200
    assert access["model"] == "m" and access["trace_id"] == "trace-1" and isinstance(access["latency_ms"], float)
