"""The `up` supervisor driven through a fake Env: start-up gating, restarts and back-off, giving up,
signals and stop order, on a simulated clock with simulated processes (no real sleeps or kills)."""

from __future__ import annotations

import io
import itertools
import json
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fusionkit_cli.up.env import DOWN_SIGNAL, SignalHandler
from fusionkit_cli.up.policy import RestartPolicy
from fusionkit_cli.up.printer import MAX_QUEUED, Printer, use_colour
from fusionkit_cli.up.supervisor import BRIDGE_KEY_ENV, Supervisor, UpOptions
from server.config import PanelConfig
from tests.livesrv import free_port


@dataclass
class Script:
    """How one spawn of a simulated child behaves."""

    boot_s: float | None = 0.3  # answers /health this long after spawning; None: never
    exit_after_s: float | None = None  # exits on its own this long after spawning
    deaf: tuple[float, float] | None = None  # alive but not answering /health from .. until (after spawning)
    code: int = 1
    output: list[str] = field(default_factory=list)


class FakeProc:
    def __init__(self, env: FakeEnv, pid: int, name: str, port: int, script: Script) -> None:
        self.env, self.pid, self.name, self.port, self.script = env, pid, name, port, script
        self.started = env.t
        self.returncode: int | None = None
        self.stdout = io.BytesIO("".join(line + "\n" for line in script.output).encode())

    def poll(self) -> int | None:
        exit_after = self.script.exit_after_s
        if self.returncode is None and exit_after is not None and self.env.t >= self.started + exit_after:
            self.returncode = self.script.code
        return self.returncode

    def healthy(self) -> bool:
        boot, deaf, age = self.script.boot_s, self.script.deaf, self.env.t - self.started
        if deaf is not None and deaf[0] <= age < deaf[1]:
            return False
        return self.poll() is None and boot is not None and age >= boot


class FakeEnv:
    """Time advances only when the supervisor sleeps; scripted events fire as it passes."""

    def __init__(self, scripts: dict[str, list[Script]] | None = None) -> None:
        self.t = 1000.0
        self.scripts = scripts or {}
        self.procs: list[FakeProc] = []
        self.events: list[tuple[float, Callable[[], None]]] = []
        self.stops: list[tuple[list[str], float]] = []
        self.environments: list[tuple[list[str], dict[str, str]]] = []
        self.killed_now: list[str] = []
        self.handler: SignalHandler | None = None
        self.during_stop: Callable[[], None] | None = None

    # the Env protocol
    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
        due = [event for event in self.events if event[0] <= self.t]
        self.events = [event for event in self.events if event[0] > self.t]
        for _, action in due:
            action()

    def spawn(self, args: list[str], env: dict[str, str], death_fd: int) -> FakeProc:
        assert env["PYTHONUNBUFFERED"] == "1" and env["FUSIONKIT_PARENT_FD"] == str(death_fd)
        self.environments.append((args, env))
        name = args[args.index("--endpoint") + 1] if "serve-endpoint" in args else "router"
        nth = sum(1 for p in self.procs if p.name == name)
        plan = self.scripts.get(name, [])
        proc = FakeProc(self, 50_000 + len(self.procs), name, int(args[-1]), plan[nth] if nth < len(plan) else Script())
        self.procs.append(proc)
        return proc

    def probe(self, url: str) -> bool:
        port = int(url.rsplit(":", 1)[1])
        return any(p.port == port and p.healthy() for p in self.procs)

    def identity(self, pid: int) -> tuple[float, int] | None:
        return (1.0, pid)

    def stop(self, pids: list[int], grace_s: float) -> None:
        self.stops.append(([self.by_pid(pid).name for pid in pids], grace_s))
        if self.during_stop is not None:
            hook, self.during_stop = self.during_stop, None
            hook()
        for pid in pids:
            self.by_pid(pid).returncode = -signal.SIGTERM

    def kill_now(self, pids: list[int]) -> None:
        for pid in pids:
            self.killed_now.append(self.by_pid(pid).name)
            self.by_pid(pid).returncode = -signal.SIGKILL

    def on_signals(self, handler: SignalHandler) -> Callable[[], None]:
        self.handler = handler
        return lambda: None

    # for the tests
    def by_pid(self, pid: int) -> FakeProc:
        return next(p for p in self.procs if p.pid == pid)

    def spawns(self, name: str) -> list[FakeProc]:
        return [p for p in self.procs if p.name == name]

    def at(self, t: float, action: Callable[[], None]) -> None:
        self.events.append((t, action))

    def signal(self, sig: signal.Signals) -> Callable[[], None]:
        def send() -> None:
            assert self.handler is not None
            self.handler(sig)

        return send


def make_supervisor(
    env: FakeEnv, settings: dict[str, object] | None = None, **options: object
) -> tuple[Supervisor, io.StringIO]:
    """Three mock bridges m0..m2; m0 is the judge and synthesizer unless `settings` say otherwise."""
    config = PanelConfig.model_validate(
        {
            "endpoints": [{"id": f"m{i}", "provider": "mock", "model": f"mock-{i}"} for i in range(3)],
            "server": {"port": free_port()},
            **(settings or {}),
        }
    )
    out = io.StringIO()
    return Supervisor(config, "panel.yaml", UpOptions(**options), env=env, out=out), out  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # .fusionkit/ is relative to the working directory


def state_children(directory: Path) -> dict[str, dict[str, Any]]:
    """The children up.json lists right now, by name."""
    children = json.loads((directory / ".fusionkit" / "up.json").read_text())["children"]
    return {child["name"]: child for child in children}


def restart_delays(text: str, name: str) -> list[str]:
    lines = [line for line in text.splitlines() if f"bridge '{name}' " in line and "restarting in" in line]
    return [line.rsplit("restarting in ", 1)[1] for line in lines]


def test_a_crash_looping_judge_backs_off_exponentially_then_up_gives_up_and_stops_everything(tmp_path: Path) -> None:
    crash = Script(boot_s=None, exit_after_s=0.2, code=7, output=[f"crash line {i}" for i in range(25)])
    env = FakeEnv({"m0": [Script(exit_after_s=5, code=1), *[crash] * 6]})
    supervisor, out = make_supervisor(env)
    assert supervisor.run() == 1
    text = out.getvalue()

    assert "FusionKit is ready at" in text
    assert restart_delays(text, "m0") == ["1s", "2s", "4s", "8s", "16s"]
    # The gaps between a death and the next spawn follow the back-off (within one supervision tick).
    spawns = env.spawns("m0")
    gaps = [b.started - (a.started + (a.script.exit_after_s or 0)) for a, b in itertools.pairwise(spawns)]
    assert [round(g) for g in gaps] == [1, 2, 4, 8, 16]
    assert (
        "bridge 'm0' exited with status 7; restarted 5 times in 300s; giving up on it, and without it "
        "the judge ('m0') is down, so everything stops" in text
    )
    assert "crash line 24" in text.split("giving up", 1)[1] and "crash line 4\n" not in text.split("giving up", 1)[1]
    # Everything still running was stopped, the router before the bridges, and the state file is gone.
    assert [names for names, _ in env.stops] == [["router"], ["m1", "m2"]]
    assert all(p.returncode is not None for p in env.procs)
    assert not (tmp_path / ".fusionkit" / "up.json").exists()


def test_back_off_starts_over_only_after_the_child_stayed_healthy(tmp_path: Path) -> None:
    env = FakeEnv(
        {
            "m1": [
                Script(exit_after_s=5),
                Script(exit_after_s=40),  # healthy, and up well past stable_s: the next delay is 1 s again
                Script(exit_after_s=3),  # healthy but short-lived: the back-off goes on growing
                Script(),
            ]
        }
    )
    supervisor, out = make_supervisor(env, restart_policy=lambda: RestartPolicy(stable_s=20))
    env.at(1090, env.signal(signal.SIGTERM))
    states: list[dict[str, dict[str, Any]]] = []
    env.at(1005.5, lambda: states.append(state_children(tmp_path)))  # m1 is dead, waiting for its restart
    env.at(1010, lambda: states.append(state_children(tmp_path)))  # m1 runs again
    assert supervisor.run() == 143
    text = out.getvalue()
    first, second = env.spawns("m1")[:2]
    assert (states[0]["m1"]["pid"], states[0]["m1"]["restarts"]) == (first.pid, 0)  # still listed, by its last pid
    assert (states[1]["m1"]["pid"], states[1]["m1"]["restarts"]) == (second.pid, 1)
    assert restart_delays(text, "m1") == ["1s", "1s", "2s"]
    assert "m1 stayed healthy for 20s; its restart back-off starts over" in text
    assert text.count("bridge 'm1' is healthy again") == 3
    assert "SIGTERM received" in text and text.rstrip().endswith("fusionkit up: stopped")


def test_a_restarted_child_that_never_answers_is_stopped_and_restarted_again() -> None:
    env = FakeEnv({"m2": [Script(exit_after_s=5), Script(boot_s=None), Script()]})
    supervisor, out = make_supervisor(env, ready_timeout_s=3)
    env.at(1060, env.signal(signal.SIGINT))
    assert supervisor.run() == 130
    text = out.getvalue()
    assert "bridge 'm2' was not healthy 3s after a restart; restarting in 2s" in text
    hung = env.spawns("m2")[1]
    assert (["m2"], 5.0) in env.stops and hung.returncode == -signal.SIGTERM
    assert len(env.spawns("m2")) == 3 and "bridge 'm2' is healthy again" in text


def test_a_bridge_that_exits_at_start_fails_the_start_with_its_status_and_last_20_lines(tmp_path: Path) -> None:
    lines = [f"m1 says {i}" for i in range(30)]
    env = FakeEnv({"m1": [Script(boot_s=None, exit_after_s=0.2, code=3, output=lines)]})
    supervisor, out = make_supervisor(env)
    assert supervisor.run() == 1
    text = out.getvalue()
    error = text.split("error: ", 1)[1]
    assert error.startswith("bridge 'm1' exited with status 3 during start-up; last 20 log lines")
    assert "m1 says 10\n" in error and "m1 says 29\n" in error and "m1 says 9\n" not in error
    assert "FusionKit is ready" not in text
    # The router started with the bridges, and was stopped first; it was never told where m1 is.
    assert [names for names, _ in env.stops] == [["router"], ["m0", "m2"]]
    assert json.loads((tmp_path / ".fusionkit" / "bridges.json").read_text())["m1"] is None
    assert not (tmp_path / ".fusionkit" / "up.json").exists()


def test_a_bridge_not_healthy_by_the_deadline_fails_the_start_with_progress_shown() -> None:
    env = FakeEnv({"m2": [Script(boot_s=None, output=["loading weights"])]})
    supervisor, out = make_supervisor(env, ready_timeout_s=5)
    assert supervisor.run() == 1
    text = out.getvalue()
    assert "waiting  m2      2.0s  loading weights" in text  # elapsed time and its last log line
    assert "error: bridge 'm2' was not healthy after 5s (--ready-timeout" in text
    assert text.count("  ready    ") == 3  # m0, m1 and the router
    assert [names for names, _ in env.stops] == [["router"], ["m0", "m1", "m2"]]


def test_an_automatic_port_taken_before_the_bridge_bound_it_moves_to_another_port(tmp_path: Path) -> None:
    taken = Script(boot_s=None, exit_after_s=0.1, output=["ERROR: [Errno 98] ...: address already in use"])
    env = FakeEnv({"m0": [taken, Script()]})
    supervisor, out = make_supervisor(env)
    env.at(1010, env.signal(signal.SIGTERM))
    versions = watch_bridges_file(env, tmp_path)
    assert supervisor.run() == 143
    first, second = env.spawns("m0")
    assert first.port != second.port
    assert f"port {first.port} for m0 was taken meanwhile; trying port {second.port}" in out.getvalue()
    # The router, running meanwhile, is pointed at the port that worked, and never at the one taken.
    assert list(dict.fromkeys(v["m0"] for v in versions)) == [None, f"http://127.0.0.1:{second.port}"]


def watch_bridges_file(env: FakeEnv, directory: Path) -> list[dict[str, str | None]]:
    """Every distinct content the bridges file has had, read after each step of the fake clock."""
    versions: list[dict[str, str | None]] = []
    sleep = env.sleep

    def sleep_and_look(seconds: float) -> None:
        path = directory / ".fusionkit" / "bridges.json"
        current = json.loads(path.read_text()) if path.exists() else None
        if current is not None and (not versions or versions[-1] != current):
            versions.append(current)
        sleep(seconds)

    env.sleep = sleep_and_look  # type: ignore[method-assign]
    return versions


def test_the_router_starts_with_the_bridges_and_learns_each_once_it_answers(tmp_path: Path) -> None:
    env = FakeEnv({"m0": [Script(boot_s=0.2)], "m1": [Script(boot_s=0.6)], "m2": [Script(boot_s=1.0)]})
    env.scripts["router"] = [Script(boot_s=0.8)]
    supervisor, out = make_supervisor(env)
    env.at(1030, env.signal(signal.SIGTERM))
    versions = watch_bridges_file(env, tmp_path)
    assert supervisor.run() == 143
    router = env.spawns("router")[0]
    assert all(bridge.started == router.started for name in ("m0", "m1", "m2") for bridge in env.spawns(name))
    urls = {name: f"http://127.0.0.1:{env.spawns(name)[0].port}" for name in ("m0", "m1", "m2")}
    # One bridge at a time, in the order they answered /health; none before it did.
    assert versions == [
        {"m0": None, "m1": None, "m2": None},
        {"m0": urls["m0"], "m1": None, "m2": None},
        {"m0": urls["m0"], "m1": urls["m1"], "m2": None},
        {"m0": urls["m0"], "m1": urls["m1"], "m2": urls["m2"]},
    ]
    text = out.getvalue()
    # Ready when the slowest of the four is (1 s, give or take a 50 ms poll), not after the bridges'
    # 1 s plus the router's 0.8 s.
    ready = {line.split()[1]: line.rsplit(" in ", 1)[1] for line in text.splitlines() if line.startswith("  ready ")}
    assert ready == {"m0": "0.25s", "m1": "0.65s", "router": "0.85s", "m2": "1.05s"}
    banner_at = text.index("FusionKit is ready at")
    assert all(text.index(f"  ready    {name} ") < banner_at for name in ("m0", "m1", "m2", "router"))


def test_a_configured_port_in_use_stops_the_start_before_anything_is_spawned() -> None:
    env = FakeEnv()
    supervisor, out = make_supervisor(env)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", supervisor.router_port))
        holder.listen()
        assert supervisor.run() == 1
    assert f"port {supervisor.router_port} for the router" in out.getvalue()
    assert env.procs == []


def test_sigterm_stops_the_router_first_and_a_second_signal_kills_at_once(tmp_path: Path) -> None:
    env = FakeEnv()
    supervisor, out = make_supervisor(env, grace_s=5)
    env.at(1003, env.signal(signal.SIGTERM))
    env.during_stop = env.signal(signal.SIGINT)  # the impatient second Ctrl-C, while the router is stopping
    assert supervisor.run() == 143
    assert env.stops[0] == (["router"], 5)
    assert sorted(env.killed_now) == ["m0", "m1", "m2", "router"]
    assert "SIGTERM received: stopping the router, then the bridges" in out.getvalue()
    assert all(p.returncode is not None for p in env.procs)
    state = tmp_path / ".fusionkit" / "up.json"
    assert not state.exists()


@pytest.mark.parametrize(
    ("sig", "code", "said"),
    [
        (signal.SIGINT, 130, "SIGINT received"),
        (signal.SIGTERM, 143, "SIGTERM received"),
        (DOWN_SIGNAL, 0, "`fusionkit down` asked to stop"),
    ],
)
@pytest.mark.parametrize("when", [1001.0, 1030.0], ids=["while-starting", "while-serving"])
def test_each_stop_request_has_its_exit_status(sig: signal.Signals, code: int, said: str, when: float) -> None:
    env = FakeEnv({"router": [Script(boot_s=5)]})  # until t=1005 the stack is still starting
    supervisor, out = make_supervisor(env)
    env.at(when, env.signal(sig))
    assert supervisor.run() == code
    text = out.getvalue()
    assert ("FusionKit is ready at" in text) == (when > 1005)
    assert f"{said}: stopping the router, then the bridges" in text
    assert text.rstrip().endswith("fusionkit up: stopped") and all(p.returncode is not None for p in env.procs)


def crash_loop(exit_after_s: float = 0.2) -> list[Script]:
    """Healthy at first, then dying soon after every start: past the default limit of 5 restarts."""
    return [Script(exit_after_s=5), *[Script(boot_s=None, exit_after_s=exit_after_s, code=9)] * 6]


def test_a_crash_looping_panel_member_is_given_up_alone_and_the_rest_keep_serving(tmp_path: Path) -> None:
    env = FakeEnv({"m2": crash_loop()})
    supervisor, out = make_supervisor(env)
    seen: list[dict[str, dict[str, Any]]] = []
    env.at(1100, lambda: seen.append(state_children(tmp_path)))
    env.at(1200, env.signal(signal.SIGTERM))
    assert supervisor.run() == 143  # it served on until asked to stop
    text = out.getvalue()

    assert restart_delays(text, "m2") == ["1s", "2s", "4s", "8s", "16s"]
    assert "!!! GAVE UP on bridge 'm2': exited with status 9; restarted 5 times in 300s." in text
    assert "the stack keeps serving without it" in text and "panels answer from m0, m1 (panel.min_successful 1)" in text
    assert len(env.spawns("m2")) == 6  # the first start and 5 restarts, then never again
    # Nothing else was stopped or restarted until the SIGTERM, router first as always.
    assert [names for names, _ in env.stops] == [["router"], ["m0", "m1"]]
    assert [len(env.spawns(n)) for n in ("m0", "m1", "router")] == [1, 1, 1]
    assert seen[0]["m2"]["given_up"] is True and seen[0]["m0"]["given_up"] is False
    log = (tmp_path / ".fusionkit" / "logs" / "m2.log").read_text()
    assert "--- fusionkit up: gave up on m2: exited with status 9" in log


@pytest.mark.parametrize(
    ("settings", "lost"),
    [
        ({"judge_model": "m1", "synthesizer_model": "m0"}, "the judge ('m1') is down"),
        ({"synthesizer_model": "m1"}, "the synthesizer ('m1') is down"),
        ({"panel": {"min_successful": 3}}, "only 2 panel members are left (m0, m2), fewer than panel.min_successful 3"),
    ],
    ids=["judge", "synthesizer", "min_successful"],
)
def test_up_stops_everything_when_the_member_it_gives_up_is_needed(settings: dict[str, object], lost: str) -> None:
    env = FakeEnv({"m1": crash_loop()})
    supervisor, out = make_supervisor(env, settings)
    assert supervisor.run() == 1
    text = out.getvalue()
    assert (
        "error: bridge 'm1' exited with status 9; restarted 5 times in 300s; "
        f"giving up on it, and without it {lost}, so everything stops" in text
    )
    assert "GAVE UP" not in text and text.rstrip().endswith("fusionkit up: stopped after a failure")
    assert [names for names, _ in env.stops] == [["router"], ["m0", "m2"]]


def test_losing_members_one_by_one_stops_everything_only_below_min_successful() -> None:
    env = FakeEnv({"m1": crash_loop(), "m2": crash_loop(exit_after_s=20)})  # m2 gives up later
    supervisor, out = make_supervisor(env, {"panel": {"min_successful": 2}})
    assert supervisor.run() == 1
    text = out.getvalue()
    assert "!!! GAVE UP on bridge 'm1'" in text and "panels answer from m0, m2 (panel.min_successful 2)" in text
    assert (
        "error: bridge 'm2' exited with status 9; restarted 5 times in 300s; giving up on it, and without it "
        "only 1 panel member is left (m0), fewer than panel.min_successful 2" in text
    )


def test_the_router_crash_looping_stops_everything() -> None:
    env = FakeEnv({"router": crash_loop()})
    supervisor, out = make_supervisor(env)
    assert supervisor.run() == 1
    assert (
        "error: router exited with status 9; restarted 5 times in 300s; giving up and stopping everything"
        in out.getvalue()
    )


def test_a_bridge_that_is_alive_but_hung_is_restarted_like_a_dead_one_and_a_blip_is_not() -> None:
    env = FakeEnv(
        {
            "m1": [Script(deaf=(20, 10_000)), Script()],  # hangs 20 s after start, for good
            "m2": [Script(deaf=(20, 28))],  # misses at most two probes, then answers again
        }
    )
    supervisor, out = make_supervisor(env, grace_s=5)
    env.at(1100, env.signal(signal.SIGTERM))
    assert supervisor.run() == 143
    text = out.getvalue()
    hung = env.spawns("m1")[0]
    assert "bridge 'm1' did not answer /health (1 of 3 failures before it is restarted)" in text
    assert (
        "bridge 'm1' stopped answering /health (3 probes in a row failed, 5s apart) although its process runs; "
        "restarting in 1s" in text
    )
    assert env.stops[0] == (["m1"], 5) and hung.returncode == -signal.SIGTERM
    assert len(env.spawns("m1")) == 2 and "bridge 'm1' is healthy again" in text
    assert "bridge 'm2' did not answer /health (1 of 3" in text and len(env.spawns("m2")) == 1
    assert "bridge 'm2' stopped answering" not in text


def test_every_child_gets_the_bridge_key_in_its_environment_and_nowhere_else(tmp_path: Path) -> None:
    env = FakeEnv()
    supervisor, out = make_supervisor(env)
    seen: list[str] = []
    env.at(1010, lambda: seen.append((tmp_path / ".fusionkit" / "up.json").read_text()))
    env.at(1010, env.signal(signal.SIGTERM))
    supervisor.run()
    keys = {environ[BRIDGE_KEY_ENV] for _, environ in env.environments}
    assert len(env.environments) == 4 and len(keys) == 1  # one key, shared by the router and every bridge
    key = keys.pop()
    assert len(key) >= 32
    for args, _ in env.environments:
        assert key not in " ".join(args)
        flag = "--bridge-key-env" if "serve" in args and "serve-endpoint" not in args else "--auth-key-env"
        assert args[args.index(flag) + 1] == BRIDGE_KEY_ENV  # only the variable's name is in argv
    files = "".join(p.read_text() for p in (tmp_path / ".fusionkit").rglob("*") if p.is_file())
    assert key not in seen[0] + files + out.getvalue()
    assert make_supervisor(FakeEnv())[0]._bridge_key != key  # a new key for every run


class _BlockedTerminal(io.StringIO):
    """A terminal nobody reads: writes block until released."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        self.release.wait(10)
        return super().write(text)

    def isatty(self) -> bool:
        return True


def test_the_printer_never_blocks_on_a_terminal_nobody_reads_and_says_what_it_dropped() -> None:
    terminal = _BlockedTerminal()
    printer = Printer(4, out=terminal)
    printer.say("first")
    assert terminal.entered.wait(10)  # the writer is now stuck on the terminal
    for i in range(MAX_QUEUED + 500):  # returns at once although nothing can be written
        printer.line("m0", f"line {i}")
    printer.say("the supervisor's own message is kept")
    terminal.release.set()
    printer.close()
    text = terminal.getvalue()
    assert text.startswith("first\n")
    assert "m0   | line 0\n" in text and "the supervisor's own message is kept" in text
    assert "m0   | line 9999\n" in text and "m0   | line 10000\n" not in text  # the queue's bound, then drops
    assert "[500 lines not shown: output was not read fast enough; see the log files]\nm0   | line 0\n" in text


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(_BlockedTerminal()) and not use_colour(io.StringIO())
    assert not use_colour(_BlockedTerminal(), no_color_flag=True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(_BlockedTerminal())
    out = io.StringIO()
    coloured = Printer(4, colour=True, out=out)
    coloured.line("m0", "hello")
    coloured.close()
    assert out.getvalue() == "\033[36mm0   |\033[0m hello\n"
