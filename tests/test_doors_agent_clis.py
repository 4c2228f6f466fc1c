"""The real agent CLIs, offline, against a real `fusionkit up configs/demo.yaml`: Claude Code through
`/v1/messages` and Codex CLI through `/v1/responses`, each finishing a task that needs one tool call.

Both CLIs are installed from npm into a temporary prefix (pinned versions, the ones whose
requests the doors were checked against). The task names the tool and spells out its arguments,
which is how the mock members know to call it; the command's output (`fusion-42`, computed by the
shell, not written in the prompt) can only reach the final answer if the CLI really ran the tool
and sent its result back through the door.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from server.run_views import read_run
from server.store import RunStore
from tests.livesrv import free_port
from tests.up_helpers import ROOT, start_up, state, stop, wait_for_output

CLAUDE_CODE = "@anthropic-ai/claude-code@2.1.197"
CODEX = "@openai/codex@0.171.0"
COMMAND = "echo fusion-$((6*7))"
EXPECTED = "fusion-42"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def npm_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed, so Claude Code and Codex CLI cannot be installed for this test")
    prefix = tmp_path_factory.mktemp("npm")
    subprocess.run(
        [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error", CLAUDE_CODE, CODEX],
        check=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    return prefix / "node_modules" / ".bin"


@pytest.fixture(scope="module")
def fusionkit_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """`fusionkit up configs/demo.yaml` on a free port; (base URL, run store path)."""
    directory = tmp_path_factory.mktemp("up")
    port = free_port()
    proc = start_up(directory, ROOT / "configs" / "demo.yaml", "--port", str(port))
    pids: list[int] = []
    try:
        wait_for_output(proc, "stop: Ctrl-C or fusionkit down", timeout_s=60)
        pids = [c["pid"] for c in state(directory)["children"]]
        yield f"http://127.0.0.1:{port}", directory / ".fusionkit" / "runs.sqlite3"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        stop(proc, pids)


def runs_through(store_path: Path, door: str) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        store = RunStore(store_path)
        try:
            runs = []
            for record in await store.list_runs(limit=100):
                details = (await (await read_run(store, record, {})).inspection(store)).fusionkit
                runs.append(
                    {
                        "door": details["door"],
                        "state": record.state,
                        "mode": record.mode,
                        "created_at": record.created_at,
                        "final_output": record.summary.get("final_output"),
                        "candidates": details["candidates"],
                        "request": record.request,
                    }
                )
        finally:
            await store.close()
        return sorted((r for r in runs if r["door"] == door), key=lambda r: r["created_at"])

    return asyncio.run(read())


def agent_env(home: Path, **extra: str) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "TMPDIR")}
    return {**keep, "HOME": str(home), "NO_COLOR": "1", **extra}


def check_fused_tool_turns(runs: list[dict[str, Any]], tool: str) -> None:
    """One fused turn proposed the tool call, a later fused turn answered from its result."""
    assert len(runs) >= 2, runs
    calls = [c for r in runs for c in (r["final_output"] or {}).get("tool_calls") or []]
    assert [c["function"]["name"] for c in calls] == [tool]
    assert json.loads(calls[0]["function"]["arguments"]).values()
    for run in runs:
        assert run["state"] == "completed" and run["mode"] == "panel"
        assert sorted(c["endpoint_id"] for c in run["candidates"]) == ["careful", "fast", "structured"]
    assert EXPECTED in runs[-1]["final_output"]["content"]


def test_claude_code_finishes_a_tool_task_on_fused_turns(
    npm_bin: Path, fusionkit_up: tuple[str, Path], tmp_path: Path
) -> None:
    url, store = fusionkit_up
    workdir = tmp_path / "work"
    workdir.mkdir()
    prompt = f"Call Bash with {json.dumps({'command': COMMAND})} and tell me what it printed."
    env = agent_env(
        tmp_path / "home",
        IS_SANDBOX="1",
        ANTHROPIC_BASE_URL=url,
        ANTHROPIC_API_KEY="offline-no-key",
        CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
    )
    done = subprocess.run(
        [
            str(npm_bin / "claude"),
            "-p",
            prompt,
            "--model",
            "fusionkit/panel",
            "--output-format",
            "json",
            "--dangerously-skip-permissions",
        ],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["is_error"] is False and result["subtype"] == "success", result
    assert EXPECTED in result["result"] and result["num_turns"] == 2
    runs = runs_through(store, "messages")
    check_fused_tool_turns(runs, "Bash")
    # It asks for thinking, so every fused turn streamed it the run's reasoning as a thinking block
    # (docs/fusion.md#visible-reasoning), and it sent those blocks back, unsigned, in the next turn.
    assert {r["request"]["body"]["thinking"]["type"] for r in runs} <= {"enabled", "adaptive"}
    sent_back = [
        b for m in runs[-1]["request"]["body"]["messages"] if isinstance(m["content"], list) for b in m["content"]
    ]
    assert any(b["type"] == "thinking" for b in sent_back)


def test_codex_finishes_a_tool_task_on_fused_turns(
    npm_bin: Path, fusionkit_up: tuple[str, Path], tmp_path: Path
) -> None:
    url, store = fusionkit_up
    workdir = tmp_path / "work"
    workdir.mkdir()
    codex_home = tmp_path / "codex"
    codex_home.mkdir()
    (codex_home / "config.toml").write_text(
        f"""model = "fusionkit/panel"
model_provider = "fusionkit"

[model_providers.fusionkit]
name = "FusionKit"
base_url = "{url}/v1"
wire_api = "responses"
env_key = "FUSIONKIT_API_KEY"

[analytics]
enabled = false
"""
    )
    prompt = f"Call exec_command with {json.dumps({'cmd': COMMAND})} and tell me what it printed."
    env = agent_env(tmp_path / "home", CODEX_HOME=str(codex_home), FUSIONKIT_API_KEY="offline-no-key")
    done = subprocess.run(
        [
            str(npm_bin / "codex"),
            "exec",
            "--skip-git-repo-check",
            "--disable",
            "plugins",
            "--disable",
            "remote_plugin",
            "--disable",
            "apps",
            prompt,
        ],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert EXPECTED in done.stdout, done.stdout + done.stderr  # the final message
    runs = runs_through(store, "responses")
    check_fused_tool_turns(runs, "exec_command")
    body = runs[-1]["request"]["body"]
    assert body["store"] is False and body["stream"] is True
    assert [i["type"] for i in body["input"]][-2:] == ["function_call", "function_call_output"]
    # It asks for reasoning summaries, so its fused turns streamed it the run's reasoning as a reasoning
    # item (docs/fusion.md#visible-reasoning), which it sent back in the next turn.
    assert all(r["request"]["body"]["reasoning"]["summary"] == "auto" for r in runs)
    assert "reasoning" in [i["type"] for i in body["input"]]
