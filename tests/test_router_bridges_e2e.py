"""The router talking to real bridge processes (as under `fusionkit up`, without the supervisor)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import openai
import pytest

from bench.procs import wait_healthy
from tests.livesrv import free_port

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "configs" / "demo.yaml"


def _spawn(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "fusionkit_cli.main", *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=log.parent,
    )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[str, dict[str, subprocess.Popen[bytes]]]]:
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        bridges = {}
        for endpoint in ("fast", "careful", "structured"):
            port = free_port()
            procs[endpoint] = _spawn(
                ["serve-endpoint", "--config", str(DEMO), "--endpoint", endpoint, "--port", str(port)],
                tmp_path / f"{endpoint}.log",
            )
            bridges[endpoint] = f"http://127.0.0.1:{port}"
        for endpoint, url in bridges.items():
            wait_healthy(url, procs[endpoint])
        (tmp_path / "bridges.json").write_text(json.dumps(bridges))
        router_port = free_port()
        procs["router"] = _spawn(
            ["serve", "--config", str(DEMO), "--bridges", "bridges.json", "--port", str(router_port)],
            tmp_path / "router.log",
        )
        router = f"http://127.0.0.1:{router_port}"
        wait_healthy(router, procs["router"])
        yield router, procs
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.mark.slow
def test_fused_answer_through_bridge_processes(stack: tuple[str, dict[str, subprocess.Popen[bytes]]]) -> None:
    router, procs = stack
    client = openai.OpenAI(base_url=router + "/v1", api_key="x", max_retries=0)
    question = [{"role": "user", "content": "How should I structure a small Python CLI project?"}]
    reply = client.chat.completions.create(model="fusionkit/panel", messages=question)
    meta = reply.model_extra["fusionkit"]
    assert meta["candidate_model_ids"] == ["fast", "careful", "structured"] and meta["failed_members"] == []
    assert meta["decision"]["type"] == "synthesize"
    assert reply.usage.total_tokens > 0

    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="fusionkit/panel", messages=question, stream=True)
        if c.choices
    )
    assert streamed == reply.choices[0].message.content

    # One bridge down: /health says so, and the panel answers from the other two.
    procs["structured"].kill()
    procs["structured"].wait()
    health = httpx2.get(router + "/health").json()
    assert health["status"] == "degraded" and health["endpoints"]["structured"]["ready"] is False
    degraded = client.chat.completions.create(model="fusionkit/panel", messages=question)
    meta = degraded.model_extra["fusionkit"]
    assert meta["candidate_model_ids"] == ["fast", "careful"]
    assert [f["endpoint_id"] for f in meta["failed_members"]] == ["structured"]
    assert "is not reachable; it may be restarting" in meta["failed_members"][0]["reason"]
    assert meta["failed_members"][0]["status"] == 503  # not ready, as SPEC §4 words it: not a failure of the model
