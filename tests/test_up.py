"""`fusionkit up`, `status` and `down` with real processes (the supervisor's logic on a fake clock is in
test_up_supervisor.py), `down` cleaning up after a dead supervisor, and the restart policy."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import openai
import psutil
import pytest
from click.testing import CliRunner

from fusionkit_cli.main import cli
from fusionkit_cli.up.policy import RestartPolicy
from fusionkit_cli.up.state import ProcessEntry, UpState, write_state
from tests.livesrv import free_port
from tests.up_helpers import (
    alive,
    run_fusionkit,
    start_up,
    state,
    stop,
    wait_for_output,
    wait_gone,
    wait_until,
    write_config,
)

DEMO = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"
QUESTION = [{"role": "user", "content": "Compare two ways to deploy a Python service."}]


def health_column(status_output: str) -> dict[str, str]:
    rows = [line.split() for line in status_output.splitlines()]
    return {row[0]: row[4] for row in rows if len(row) == 7 and row[1] in ("bridge", "router")}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.slow
def test_the_demo_config_comes_up_serves_fused_answers_then_status_and_down_stop_everything(tmp_path: Path) -> None:
    port = free_port()
    proc = start_up(tmp_path, DEMO, "--port", str(port))
    pids: list[int] = []
    try:
        banner = wait_for_output(proc, "stop: Ctrl-C or fusionkit down")
        assert f"FusionKit is ready at http://127.0.0.1:{port}/v1" in banner
        assert "OFFLINE MOCK" in banner and "curl -s" in banner and "from openai import OpenAI" in banner
        assert "logs: .fusionkit/logs/<name>.log" in banner
        for name, model in (("fast", "mock-concise"), ("careful", "mock-cautious"), ("structured", "mock-structured")):
            assert f"  ready    {name:<10}  mock/{model}" in banner  # progress: name, provider/model, port, time
        info = state(tmp_path)
        pids = [c["pid"] for c in info["children"]]
        assert sorted(c["name"] for c in info["children"]) == ["careful", "fast", "router", "structured"]
        assert all(c["pgid"] == c["pid"] and c["create_time"] > 0 for c in info["children"])  # own groups
        assert info["supervisor"]["pid"] == proc.pid and info["config"] == str(DEMO)
        assert oct((tmp_path / ".fusionkit" / "up.json").stat().st_mode & 0o777) == "0o600"
        bridges = json.loads((tmp_path / ".fusionkit" / "bridges.json").read_text())
        assert bridges == {c["name"]: c["url"] for c in info["children"] if c["kind"] == "bridge"}
        # The bridges answer only the router, which holds this run's key; no file or argv holds it.
        assert httpx2.get(bridges["fast"] + "/v1/models").status_code == 401
        key = psutil.Process(info["children"][0]["pid"]).environ()["FUSIONKIT_BRIDGE_KEY"]
        assert len(key) >= 32 and httpx2.get(bridges["fast"] + "/v1/models", headers=bearer(key)).status_code == 200
        for child in info["children"]:
            assert key not in " ".join(psutil.Process(child["pid"]).cmdline())

        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        reply = client.chat.completions.create(model="fusionkit/panel", messages=QUESTION)
        assert reply.model_extra["fusionkit"]["candidate_model_ids"] == ["fast", "careful", "structured"]
        assert reply.choices[0].message.content

        shown = run_fusionkit(tmp_path, "status")
        assert shown.returncode == 0, shown.stdout
        assert set(health_column(shown.stdout).values()) == {"healthy"} and len(health_column(shown.stdout)) == 4

        stopped = run_fusionkit(tmp_path, "down")
        assert stopped.returncode == 0 and "stopped fusionkit up" in stopped.stdout
        assert proc.wait(timeout=30) == 0  # a stop asked for with `down` is a normal end
        assert wait_gone(pids, 5) == []
        assert not (tmp_path / ".fusionkit" / "up.json").exists()
        assert "fusionkit.bridge: bridge fast ready" in (tmp_path / ".fusionkit" / "logs" / "fast.log").read_text()
        assert proc.stdout is not None and "`fusionkit down` asked to stop" in proc.stdout.read()
        written = b"".join(p.read_bytes() for p in (tmp_path / ".fusionkit").rglob("*") if p.is_file())
        assert key.encode() not in written  # logs, the run store, bridges.json
    finally:
        stop(proc, pids)


@pytest.mark.slow
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

        # While it is down the router says so, and the panel answers from the other members.
        router = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: not httpx2.get(router + "/health").json()["endpoints"]["m2"]["ready"])
        client = openai.OpenAI(base_url=router + "/v1", api_key="x", max_retries=0)
        reply = client.chat.completions.create(model="fusionkit/panel", messages=QUESTION)
        assert reply.choices[0].message.content
        assert {"m0", "m1"} <= set(reply.model_extra["fusionkit"]["candidate_model_ids"])

        wait_for_output(proc, "bridge 'm2' exited with status -9; restarting in 1s")
        wait_for_output(proc, "restarting m2 (restart 1)")
        wait_for_output(proc, "bridge 'm2' is healthy again", timeout_s=20)
        reborn = next(c for c in state(tmp_path)["children"] if c["name"] == "m2")
        assert reborn["pid"] != victim["pid"] and reborn["restarts"] == 1 and reborn["port"] == victim["port"]
        pids.append(reborn["pid"])
        assert httpx2.get(router + "/health").json()["endpoints"]["m2"]["ready"]
        again = client.chat.completions.create(model="fusionkit/panel", messages=QUESTION)
        assert again.model_extra["fusionkit"]["candidate_model_ids"] == ["m0", "m1", "m2"]

        # SIGTERM: a requested stop, exit 143 (128 + 15), and nothing left alive.
        descendants = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 143
        assert wait_gone([*pids, *descendants], 5) == []
    finally:
        stop(proc, pids)


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert "bridge 'm1' exited with status 3 during start-up; last 1 log line (" in out
    assert "    simulated crash of m1" in out
    assert "FusionKit is ready" not in out
    assert not (tmp_path / ".fusionkit" / "up.json").exists()


@pytest.mark.slow
def test_ctrl_c_is_a_requested_stop_that_leaves_nothing_alive(tmp_path: Path) -> None:
    proc = start_up(tmp_path, write_config(tmp_path, free_port(), endpoints=1))
    pids: list[int] = []
    try:
        wait_for_output(proc, "stop: Ctrl-C or fusionkit down")
        pids = [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        assert len(pids) == 2
        proc.send_signal(signal.SIGINT)
        out = wait_for_output(proc, "fusionkit up: stopped")
        assert "SIGINT received: stopping the router, then the bridges" in out
        assert proc.wait(timeout=30) == 130  # 128 + SIGINT, as a shell reports Ctrl-C
        assert wait_gone(pids, 5) == []
        assert not (tmp_path / ".fusionkit" / "up.json").exists()
    finally:
        stop(proc, pids)


def test_down_stops_what_a_dead_supervisor_left_and_never_a_reused_pid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    leader = subprocess.Popen(sleeper, start_new_session=True)
    bystander = subprocess.Popen(sleeper, start_new_session=True)  # holds a pid the state file names wrongly
    started = [leader.pid, bystander.pid]
    try:
        # A group whose leader is gone but whose member lives on (a grandchild the leader left).
        code = f"import subprocess; print(subprocess.Popen({sleeper!r}, stdout=subprocess.DEVNULL).pid)"
        launcher = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE)
        orphan = int(launcher.communicate(timeout=30)[0])
        started.append(orphan)
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()

        def entry(name: str, pid: int, create_time: float) -> ProcessEntry:
            return ProcessEntry(name=name, kind="bridge", pid=pid, pgid=pid, create_time=create_time)

        write_state(
            UpState(
                config="panel.yaml",
                started_at=time.time(),
                base_url="http://127.0.0.1:1",
                log_dir=".fusionkit/logs",
                supervisor=ProcessEntry(name="supervisor", kind="supervisor", pid=gone.pid, pgid=1, create_time=1),
                children=[
                    entry("m0", leader.pid, psutil.Process(leader.pid).create_time()),
                    entry("m1", launcher.pid, 1.0),
                    entry("reused", bystander.pid, psutil.Process(bystander.pid).create_time() - 100),
                ],
            )
        )
        result = CliRunner().invoke(cli, ["down"])
        assert result.exit_code == 0, result.output
        assert "stopped leftover processes: m0, m1" in result.output
        assert wait_gone([leader.pid, orphan], 5) == []
        assert bystander.poll() is None  # same pid, another create time: never hit
        assert not (tmp_path / ".fusionkit" / "up.json").exists()
        assert CliRunner().invoke(cli, ["status"]).exit_code == 1
    finally:
        for pid in alive(started):
            psutil.Process(pid).kill()
        leader.wait()
        bystander.wait()


WATCHED_CHILD = """
import threading, time
from fusionkit_cli.up.watchdog import start_watchdog
start_watchdog()
print(any(t.name == "fusionkit-watchdog" for t in threading.enumerate()), flush=True)
time.sleep(60)
"""


def test_the_watchdog_stops_its_process_when_the_supervisors_pipe_closes() -> None:
    read_end, write_end = os.pipe()
    env = {**os.environ, "FUSIONKIT_PARENT_FD": str(read_end)}
    child = subprocess.Popen(
        [sys.executable, "-c", WATCHED_CHILD], env=env, pass_fds=(read_end,), stdout=subprocess.PIPE, text=True
    )
    os.close(read_end)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "True"
        os.close(write_end)  # what the kernel does when the supervisor dies, however it dies
        assert child.wait(timeout=10) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # A variable that does not name a pipe (inherited from elsewhere) starts no watchdog.
    stray = subprocess.Popen(
        [sys.executable, "-c", WATCHED_CHILD],
        env={**os.environ, "FUSIONKIT_PARENT_FD": "0"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert stray.stdout is not None and stray.stdout.readline().strip() == "False"
    finally:
        stray.kill()
        stray.wait()


def test_up_refuses_to_start_beside_a_running_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    me = psutil.Process()
    running = ProcessEntry(name="supervisor", kind="supervisor", pid=me.pid, pgid=1, create_time=me.create_time())
    write_state(UpState(config="x", started_at=0, base_url="u", log_dir="l", supervisor=running, children=[]))
    result = CliRunner().invoke(cli, ["up", str(write_config(tmp_path, free_port()))])
    assert result.exit_code == 1
    assert f"fusionkit up is already running here (pid {me.pid})" in result.output
    assert (tmp_path / ".fusionkit" / "up.json").exists()


def test_bad_config_exits_2_naming_the_key_path(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("endpoints:\n  - id: a\n    provider: mock\n    model: m\n    mock: {latency_ms: -5}\n")
    result = CliRunner().invoke(cli, ["up", str(bad)])
    assert result.exit_code == 2
    assert "endpoints[0].mock.latency_ms" in result.output and "Traceback" not in result.output


def test_a_log_dir_that_cannot_be_made_is_refused_before_anything_starts(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    config = write_config(tmp_path, free_port())
    result = run_fusionkit(tmp_path, "up", str(config), "--no-color", "--log-dir", "a-file/logs")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "--log-dir: a-file/logs: cannot be made a directory (Not a directory)" in result.stderr
    assert "Traceback" not in result.stderr and "bridges for" not in result.stdout
    assert not (tmp_path / ".fusionkit").exists()


def test_a_non_loopback_router_without_a_key_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["up", str(write_config(tmp_path, free_port())), "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "refusing to bind 0.0.0.0 without auth" in result.output and "server.api_key_env" in result.output
    assert "bridges for" not in result.output and "Traceback" not in result.output
    assert not (tmp_path / ".fusionkit").exists()


def test_up_refuses_endpoints_without_their_provider_keys_unless_allowed(tmp_path: Path) -> None:
    extra = {"id": "claude", "provider": "anthropic", "model": "claude-x", "api_key_env": "FK_ANTHROPIC_KEY"}
    config = write_config(tmp_path, free_port())
    data = json.loads(config.read_text())
    data["endpoints"].append(extra)
    config.write_text(json.dumps(data))
    refused = run_fusionkit(tmp_path, "up", str(config), env={"FK_ANTHROPIC_KEY": ""})
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "refusing to start endpoints without their API keys (or pass --allow-missing-keys)" in refused.stderr
    assert (
        f"{config}: endpoints[3].api_key_env: endpoint 'claude' (anthropic) reads its key from FK_ANTHROPIC_KEY, "
        "which is not set (or is empty)" in refused.stderr
    )
    assert not (tmp_path / ".fusionkit").exists()
    # Allowed: past the key check to the next one (a router port in use), which stops it before anything starts.
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", data["server"]["port"]))
        holder.listen()
        allowed = run_fusionkit(tmp_path, "up", str(config), "--no-color", "--allow-missing-keys")
    assert allowed.returncode == 1 and "nothing was started" in allowed.stdout, allowed.stdout + allowed.stderr
    assert "API keys" not in allowed.stdout + allowed.stderr


def test_restart_policy_backs_off_gives_up_within_its_window_and_starts_over_once_stable() -> None:
    policy = RestartPolicy(base_s=1, cap_s=8, max_restarts=5, window_s=300)
    delays = [policy.next_delay(now=t) for t in (0, 1, 2, 3, 4)]
    assert delays == [1, 2, 4, 8, 8]
    assert policy.next_delay(now=5) is None
    # Restarts older than the window no longer count against the limit, but the back-off goes on...
    assert policy.next_delay(now=400) == 8
    # ...until the child has stayed healthy a while.
    policy.stable()
    assert policy.next_delay(now=401) == 1
