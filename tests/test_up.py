"""`fusionkit up`, `status` and `down` with real processes, plus the restart policy on a fake clock."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner

from fusionkit_cli.main import cli
from fusionkit_cli.up.policy import RestartPolicy
from tests.livesrv import free_port
from tests.up_helpers import alive, start_up, state, stop, wait_for_output, wait_gone, write_config

QUESTION = [{"role": "user", "content": "Compare two ways to deploy a Python service."}]
pytestmark = pytest.mark.slow


def fusionkit(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusionkit_cli.main", *args], cwd=directory, capture_output=True, text=True, timeout=60
    )


def test_up_serves_fused_answers_then_status_and_down_stop_everything(tmp_path: Path) -> None:
    port = free_port()
    proc = start_up(tmp_path, write_config(tmp_path, port))
    pids: list[int] = []
    try:
        banner = wait_for_output(proc, "stop: Ctrl-C or fusionkit down")
        assert f"FusionKit is ready at http://127.0.0.1:{port}/v1" in banner
        assert "OFFLINE MOCK" in banner and "curl -s" in banner and "from openai import OpenAI" in banner
        info = state(tmp_path)
        pids = [c["pid"] for c in info["children"]]
        assert sorted(c["name"] for c in info["children"]) == ["m0", "m1", "m2", "router"]
        assert oct((tmp_path / ".fusionkit" / "up.json").stat().st_mode & 0o777) == "0o600"

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        reply = client.chat.completions.create(model="fusionkit/panel", messages=QUESTION)
        assert reply.model_extra["fusionkit"]["candidate_model_ids"] == ["m0", "m1", "m2"]

        shown = fusionkit(tmp_path, "status")
        assert shown.returncode == 0, shown.stdout
        assert shown.stdout.count("healthy") == 4

        stopped = fusionkit(tmp_path, "down")
        assert stopped.returncode == 0 and "stopped fusionkit up" in stopped.stdout
        assert proc.wait(timeout=30) == 0
        assert wait_gone(pids, 5) == []
        assert not (tmp_path / ".fusionkit" / "up.json").exists()
        assert (tmp_path / ".fusionkit" / "logs" / "m0.log").read_text()
    finally:
        stop(proc, pids)


def test_a_killed_bridge_is_restarted_and_requests_keep_succeeding(tmp_path: Path) -> None:
    port = free_port()
    proc = start_up(tmp_path, write_config(tmp_path, port))
    pids: list[int] = []
    try:
        wait_for_output(proc, "stop: Ctrl-C or fusionkit down")
        info = state(tmp_path)
        pids = [c["pid"] for c in info["children"]]
        victim = next(c for c in info["children"] if c["name"] == "m2")
        os.kill(victim["pid"], signal.SIGKILL)

        # Meanwhile the panel answers from the other members.
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        reply = client.chat.completions.create(model="fusionkit/panel", messages=QUESTION)
        assert reply.choices[0].message.content

        wait_for_output(proc, "restarting m2 (restart 1)")
        wait_for_output(proc, "bridge m2 ready", timeout_s=20)
        reborn = next(c for c in state(tmp_path)["children"] if c["name"] == "m2")
        assert reborn["pid"] != victim["pid"] and reborn["restarts"] == 1
        pids.append(reborn["pid"])
        again = client.chat.completions.create(model="fusionkit/panel", messages=QUESTION)
        assert again.model_extra["fusionkit"]["candidate_model_ids"] == ["m0", "m1", "m2"]

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert wait_gone(pids, 5) == []
    finally:
        stop(proc, pids)


def test_sigkill_of_the_supervisor_leaves_no_child_alive(tmp_path: Path) -> None:
    proc = start_up(tmp_path, write_config(tmp_path, free_port()))
    pids: list[int] = []
    try:
        wait_for_output(proc, "stop: Ctrl-C or fusionkit down")
        pids = [c["pid"] for c in state(tmp_path)["children"]]
        assert len(alive(pids)) == 4
        proc.kill()
        proc.wait()
        assert wait_gone(pids, 5) == []
    finally:
        stop(proc, pids)


def test_a_configured_port_in_use_is_reported_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "fusionkit_cli.main", "up", str(write_config(tmp_path, taken)), "--no-color"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    assert f"port {taken} for the router" in result.stdout and "nothing was started" in result.stdout
    assert f"by pid {os.getpid()}" in result.stdout  # names who holds it
    assert "bridges for" not in result.stdout and "FusionKit is ready" not in result.stdout
    assert not (tmp_path / ".fusionkit" / "up.json").exists()


def test_a_bridge_that_crashes_at_start_aborts_the_start_cleanly(tmp_path: Path) -> None:
    # Fault injection at the interpreter level: the bridge for m1 dies as it starts.
    hook = tmp_path / "inject"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import sys\nif 'serve-endpoint' in sys.argv and 'm1' in sys.argv:\n"
        "    print('simulated crash of m1', flush=True)\n    import os\n    os._exit(3)\n"
    )
    proc = start_up(tmp_path, write_config(tmp_path, free_port()), env={"PYTHONPATH": f"{hook}:{os.getcwd()}"})
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        stop(proc, [])
    assert proc.returncode == 1
    assert "bridge 'm1' exited with status 3 during start-up" in out
    assert "simulated crash of m1" in out
    assert "FusionKit is ready" not in out
    assert not (tmp_path / ".fusionkit" / "up.json").exists()


def test_bad_config_exits_2_naming_the_key_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("endpoints:\n  - id: a\n    provider: mock\n    model: m\n    mock: {latency_ms: -5}\n")
    result = CliRunner().invoke(cli, ["up", str(bad)])
    assert result.exit_code == 2
    assert "endpoints[0].mock.latency_ms" in result.output and "Traceback" not in result.output


def test_restart_policy_backs_off_and_gives_up_within_its_window() -> None:
    policy = RestartPolicy(base_s=1, cap_s=8, max_restarts=5, window_s=300)
    delays = [policy.next_delay(now=t) for t in (0, 1, 2, 3, 4)]
    assert delays == [1, 2, 4, 8, 8]
    assert policy.next_delay(now=5) is None
    # Restarts older than the window no longer count: a child that stayed up starts afresh.
    assert policy.next_delay(now=400) == 1
