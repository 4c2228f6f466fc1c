"""The `fusionkit up` supervisor: start the bridges, gate on health, start the router, watch, stop.

    supervisor = Supervisor(config, "panel.yaml", UpOptions(ready_timeout_s=30))
    code = supervisor.run()   # blocks until a stop: 130 after Ctrl-C, 143 after SIGTERM, 0 after
                              # `fusionkit down`, 1 after a failure

Start: configured ports are checked before anything is spawned; the router and the bridges start
together, and each must answer /health before its deadline (one that exits fails the start at
once, with its last log lines; a bridge whose automatic port was taken meanwhile moves to
another port). The router learns its bridges from the bridges file, where each bridge appears
only once it answered /health at its final port: until then the router reports that endpoint
not ready and calls no one in its name. The bridges require a bearer key generated here, handed
to every child in its environment. Watch: a child that dies, or a bridge that stops answering its
health probes, is restarted after 1 s, 2 s, 4 s ...; past the restart limit, `up` gives up on
that bridge alone and serves on without it, unless the stack can no longer answer without it
(the judge, the synthesizer, or fewer than `panel.min_successful` members left) or it is the
router: then everything stops. Stop: the router first, then the bridges, each tree SIGTERM, then
SIGKILL after a grace period; a second signal kills at once.

Every spawn happens on the thread that calls `run()` (the main thread under the CLI), because
PR_SET_PDEATHSIG fires when the spawning *thread* exits. Time, signals, processes and probes go
through `env`, so tests can drive all of this on a fake clock.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from fusionkit_cli.up import procs
from fusionkit_cli.up.banner import ready_banner
from fusionkit_cli.up.bytecode import precompile
from fusionkit_cli.up.child import Child
from fusionkit_cli.up.env import DOWN_SIGNAL, Env, SystemEnv
from fusionkit_cli.up.policy import RestartPolicy
from fusionkit_cli.up.ports import PortInUse, check_free, free_port
from fusionkit_cli.up.printer import LogFile, Printer
from fusionkit_cli.up.state import STATE_PATH, ProcessEntry, UpState, remove_state, write_state
from server.config import PanelConfig

__all__ = ["BRIDGE_KEY_ENV", "STOP_REQUESTS", "Failure", "StopRequest", "Supervisor", "UpOptions"]

POLL_S = 0.05  # health polling during start-up: the banner should follow readiness closely
TICK_S = 0.2  # the supervision loop: how soon a death or a due restart is noticed
PROGRESS_EVERY_S = 2.0
PORT_MOVES = 3  # an automatic port taken between choosing and binding it: try this many others
BRIDGES_PATH = STATE_PATH.parent / "bridges.json"
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
# The variable that carries the bridges' bearer key to every child; only its name is ever in argv.
BRIDGE_KEY_ENV = "FUSIONKIT_BRIDGE_KEY"


class Failure(Exception):
    """The stack could not start, or could not be kept running; the message says which child and why."""


class _Stopped(Exception):
    """A stop was requested while starting."""


@dataclass(frozen=True)
class StopRequest:
    """A stop someone asked for: how the output names it, and the status `up` then exits with."""

    how: str
    exit_code: int


# 128 + the signal number after a signal, as a shell reports it; `fusionkit down` is a normal end.
STOP_REQUESTS = {
    signal.SIGINT: StopRequest("SIGINT received", 130),
    signal.SIGTERM: StopRequest("SIGTERM received", 143),
    DOWN_SIGNAL: StopRequest("`fusionkit down` asked to stop", 0),
}


@dataclass
class UpOptions:
    host: str = "127.0.0.1"
    port: int | None = None
    log_dir: Path = STATE_PATH.parent / "logs"
    colour: bool = False
    ready_timeout_s: float = 30.0
    grace_s: float = 5.0
    insecure_no_auth: bool = False  # passed to the router, which otherwise refuses a non-loopback bind without a key
    restart_policy: Callable[[], RestartPolicy] = field(default=RestartPolicy)
    probe_every_s: float = 5.0  # a healthy bridge's /health is probed this often ...
    unhealthy_probes: int = 3  # ... and this many failures in a row make it hung: it is restarted


class Supervisor:
    """Owns one stack's life: plans ports, starts and gates children, restarts the fallen, stops all."""

    def __init__(
        self,
        config: PanelConfig,
        config_path: str,
        options: UpOptions,
        env: Env | None = None,
        out: IO[str] | None = None,
    ) -> None:
        self.config = config
        self.config_path = str(Path(config_path).resolve())
        self.options = options
        self.env: Env = env or SystemEnv()
        width = max(len(name) for name in [*(e.id for e in config.endpoints), "router"])
        self.printer = Printer(width, colour=options.colour, out=out)
        self.router_port = options.port or config.server.port
        self._reach = "127.0.0.1" if options.host in WILDCARD_HOSTS else options.host  # where clients find it
        self.bridges: list[Child] = []
        self.router: Child | None = None
        self.policies: dict[str, RestartPolicy] = {}
        self.restart_due: dict[str, float] = {}
        self.published: set[str] = set()  # bridges in the bridges file: healthy once, at their final port
        self.stop_request: StopRequest | None = None
        self.hurry = False
        self._bridge_key = secrets.token_urlsafe(32)  # this run's only: never written to a file or argv
        self.started_at = time.time()
        self._ports_taken: set[int] = {self.router_port}
        self._death_read, self._death_write = os.pipe()  # the write end is ours alone (not inheritable)

    @property
    def base_url(self) -> str:
        assert self.router is not None, "known once the ports are planned"
        return self.router.url

    # -- signals ----------------------------------------------------------------------------------

    def _on_signal(self, signum: int) -> None:
        # Flags and kill syscalls only: the handler runs between two bytecodes of the main thread,
        # which may hold the printer's lock, so printing from here could deadlock.
        if self.stop_request is not None:
            self.hurry = True  # a second Ctrl-C: no more grace
            live = [c.proc.pid for c in self._children() if c.proc is not None and c.proc.returncode is None]
            self.env.kill_now(live)
            return
        self.stop_request = STOP_REQUESTS[signal.Signals(signum)]

    # -- start ------------------------------------------------------------------------------------

    def _free_port(self) -> int:
        port = free_port()
        while port in self._ports_taken:
            port = free_port()
        self._ports_taken.add(port)
        return port

    def _child(
        self, name: str, kind: str, command: list[str], port: int, description: str, *, auto_port: bool = False
    ) -> Child:
        self.policies[name] = self.options.restart_policy()
        log = LogFile(self.options.log_dir / f"{name}.log")
        host = self._reach if kind == "router" else "127.0.0.1"
        return Child(
            name,
            kind,
            command,
            port,
            self.printer,
            log,
            description,
            host=host,
            auto_port=auto_port,
            extra_env={BRIDGE_KEY_ENV: self._bridge_key},
        )

    def _plan(self) -> None:
        """Ports first: a configured port in use is reported before anything is spawned."""
        check_free(self.options.host, self.router_port, "the router (server.port / --port)")
        for endpoint in self.config.endpoints:
            if endpoint.port is not None:
                check_free("127.0.0.1", endpoint.port, f"endpoint '{endpoint.id}' (endpoints[].port)")
                self._ports_taken.add(endpoint.port)
        python = [sys.executable, "-m", "fusionkit_cli.main"]
        for endpoint in self.config.endpoints:
            command = [*python, "serve-endpoint", "--config", self.config_path, "--endpoint", endpoint.id]
            self.bridges.append(
                self._child(
                    endpoint.id,
                    "bridge",
                    [*command, "--host", "127.0.0.1", "--auth-key-env", BRIDGE_KEY_ENV, *self._metrics_flags()],
                    endpoint.port or self._free_port(),
                    f"{endpoint.provider}/{endpoint.model}",
                    auto_port=endpoint.port is None,
                )
            )
        bridges = str(BRIDGES_PATH.resolve())
        command = [*python, "serve", "--config", self.config_path, "--bridges", bridges, "--host", self.options.host]
        command += ["--bridge-key-env", BRIDGE_KEY_ENV]
        if self.options.insecure_no_auth:
            command.append("--insecure-no-auth")
        self.router = self._child("router", "router", command, self.router_port, "fusion router")

    def _metrics_flags(self) -> list[str]:
        """A bridge's /metrics is scraped like the router's: behind the router's key when it has one."""
        server = self.config.server
        if not server.metrics:
            return ["--metrics", "off"]
        if server.metrics_auth and server.api_key_env:
            return ["--metrics-key-env", server.api_key_env]
        return ["--metrics", "open"]

    def start(self) -> None:
        self._plan()
        assert self.router is not None
        if sys.dont_write_bytecode:  # inherited by every child: none of them would keep what it compiles
            precompile()
        self.printer.say(f"fusionkit up: {len(self.bridges)} bridges for {self.config_path}")
        self._publish()
        # The router imports while the bridges do, instead of after them; it calls a bridge only
        # once _await_healthy has published it.
        for child in [self.router, *self.bridges]:
            child.spawn(self.env, self._death_read)
        self._write_state()
        self._await_healthy([*self.bridges, self.router])
        bridges = {child.name: child.url for child in self.bridges}
        self.printer.say(ready_banner(self.base_url, self.config, self.options.log_dir, bridges))

    def _publish(self) -> None:
        """Write the bridges file: each bridge's URL once it answered /health, null before.

        Replaced whole (the router re-reads it when it changes), so a reader never sees half a file.
        """
        urls = {child.name: child.url if child.name in self.published else None for child in self.bridges}
        text = json.dumps(urls, indent=2)
        if BRIDGES_PATH.exists() and BRIDGES_PATH.read_text() == text:
            return
        BRIDGES_PATH.parent.mkdir(parents=True, exist_ok=True)
        fresh = BRIDGES_PATH.with_suffix(".json.new")
        fresh.write_text(text)
        os.replace(fresh, BRIDGES_PATH)

    def _await_healthy(self, children: list[Child]) -> None:
        waiting = list(children)
        next_progress = self.env.now() + PROGRESS_EVERY_S
        while waiting:
            if self.stop_request is not None:
                raise _Stopped
            now = self.env.now()
            for child in list(waiting):
                code = child.exit_code()
                if code is not None:
                    if self._moved_port(child):
                        continue
                    what = f"exited with status {code} during start-up"
                    raise Failure(f"{child.kind} '{child.name}' {what}; {child.tail()}")
                if self.env.probe(child.url):
                    waiting.remove(child)
                    self._healthy(child, now)
                    if child.kind == "bridge":
                        self.published.add(child.name)
                        self._publish()
                    self.printer.say(
                        f"  ready    {child.name:<{self.printer.width}}  {child.description:<28}  "
                        f"port {child.port:<5}  in {now - child.spawned_at:.2f}s"
                    )
                elif now - child.spawned_at > self.options.ready_timeout_s:
                    raise Failure(
                        f"{child.kind} '{child.name}' was not healthy after {self.options.ready_timeout_s:g}s "
                        f"(--ready-timeout; it was still running, and was stopped); {child.tail()}"
                    )
            if waiting and now >= next_progress:
                next_progress = now + PROGRESS_EVERY_S
                for child in waiting:
                    self.printer.say(
                        f"  waiting  {child.name:<{self.printer.width}}  {now - child.spawned_at:.1f}s  "
                        f"{child.last_line[-100:] or '(no output yet)'}"
                    )
            if waiting:
                self.env.sleep(POLL_S)

    def _moved_port(self, child: Child) -> bool:
        """An automatic port someone took between our choosing it and the child binding it: move."""
        child.drain()
        if not child.auto_port or child.restarts >= PORT_MOVES:
            return False
        if not any("address already in use" in line.lower() for line in child.recent):
            return False
        old, child.port = child.port, self._free_port()
        child.restarts += 1
        self.printer.say(f"  port {old} for {child.name} was taken meanwhile; trying port {child.port}")
        child.spawn(self.env, self._death_read)
        self._write_state()
        return True

    # -- watch ------------------------------------------------------------------------------------

    def _children(self) -> list[Child]:
        return [*self.bridges, *([self.router] if self.router is not None else [])]

    def watch(self) -> None:
        while self.stop_request is None:
            now = self.env.now()
            for child in self._children():
                self._check(child, now)
            self.env.sleep(TICK_S)

    def _healthy(self, child: Child, now: float) -> None:
        child.healthy_at = now
        child.next_probe = now + self.options.probe_every_s

    def _check(self, child: Child, now: float) -> None:
        if child.given_up:
            return
        due = self.restart_due.get(child.name)
        if due is not None:
            if now >= due:
                del self.restart_due[child.name]
                child.restarts += 1
                self.printer.say(f"restarting {child.name} (restart {child.restarts})")
                child.spawn(self.env, self._death_read)
                self._write_state()
            return
        code = child.exit_code()
        if code is not None:
            self._schedule_restart(child, now, f"exited with status {code}")
            return
        policy = self.policies[child.name]
        if child.healthy_at is None:
            if self.env.probe(child.url):
                self._healthy(child, now)
                self.printer.say(
                    f"{child.kind} '{child.name}' is healthy again ({now - child.spawned_at:.1f}s after restart "
                    f"{child.restarts})"
                )
            elif now - child.spawned_at > self.options.ready_timeout_s:
                self._restart_unresponsive(child, f"was not healthy {self.options.ready_timeout_s:g}s after a restart")
        elif child.kind == "bridge" and now >= child.next_probe and not self._answers(child, now):
            self._restart_unresponsive(
                child,
                f"stopped answering /health ({child.failed_probes} probes in a row failed, "
                f"{self.options.probe_every_s:g}s apart) although its process runs",
            )
        elif policy.step and now - child.healthy_at >= policy.stable_s:
            policy.stable()
            self.printer.say(f"{child.name} stayed healthy for {policy.stable_s:g}s; its restart back-off starts over")

    def _answers(self, child: Child, now: float) -> bool:
        """A healthy bridge's periodic probe: False once `unhealthy_probes` in a row have failed.

        Only bridges: the router's /health waits on its bridges' probes, so a hung bridge would
        make a healthy router look hung too.
        """
        child.next_probe = now + self.options.probe_every_s
        if self.env.probe(child.url):
            child.failed_probes = 0
            return True
        child.failed_probes += 1
        limit = self.options.unhealthy_probes
        if child.failed_probes < limit:
            self.printer.say(
                f"{child.kind} '{child.name}' did not answer /health ({child.failed_probes} of {limit} "
                "failures before it is restarted)"
            )
        return child.failed_probes < limit

    def _restart_unresponsive(self, child: Child, why: str) -> None:
        """A live process that does not serve is stopped and restarted like a dead one."""
        assert child.pid is not None
        self.env.stop([child.pid], self.options.grace_s)
        child.exit_code()  # reap it
        self._schedule_restart(child, self.env.now(), why)

    def _schedule_restart(self, child: Child, now: float, why: str) -> None:
        policy = self.policies[child.name]
        delay = policy.next_delay(now)
        if delay is None:
            self._give_up(child, f"{why}; restarted {policy.max_restarts} times in {policy.window_s:g}s")
            return
        self.printer.say(f"{child.kind} '{child.name}' {why}; restarting in {delay:g}s")
        self.restart_due[child.name] = now + delay

    def _give_up(self, child: Child, why: str) -> None:
        """Past its restart limit: leave a bridge down and serve on, unless the stack needs it."""
        if child.kind == "router":
            raise Failure(f"router {why}; giving up and stopping everything; {child.tail()}")
        child.given_up = True
        child.log.write(f"--- fusionkit up: gave up on {child.name}: {why}")
        self._write_state()
        lost = self._lost()
        if lost is not None:
            raise Failure(
                f"bridge '{child.name}' {why}; giving up on it, and without it {lost}, so everything stops; "
                f"{child.tail()}"
            )
        serving = [m for m in self.config.panel_members if m not in self._given_up()]
        self.printer.say(
            f"!!! GAVE UP on bridge '{child.name}': {why}.\n"
            f"!!! '{child.name}' stays DOWN until `fusionkit up` starts again; the stack keeps serving without it: "
            f"the router reports it not ready, and panels answer from {', '.join(serving)} "
            f"(panel.min_successful {self.config.panel.min_successful}).\n"
            f"    {child.tail()}"
        )

    def _given_up(self) -> set[str]:
        return {child.name for child in self.bridges if child.given_up}

    def _lost(self) -> str | None:
        """What the stack can no longer do with the bridges given up, or None while it still serves."""
        down = self._given_up()
        for role, endpoint in (("judge", self.config.judge), ("synthesizer", self.config.synthesizer)):
            if endpoint in down:
                return f"the {role} ('{endpoint}') is down"
        left = [m for m in self.config.panel_members if m not in down]
        needed = self.config.panel.min_successful
        if len(left) < needed:
            are = "member is" if len(left) == 1 else "members are"
            names = ", ".join(left) or "none"
            return f"only {len(left)} panel {are} left ({names}), fewer than panel.min_successful {needed}"
        return None

    # -- stop -------------------------------------------------------------------------------------

    def _live_pids(self, children: list[Child]) -> list[int]:
        return [child.proc.pid for child in children if child.proc is not None and child.exit_code() is None]

    def stop(self) -> None:
        if self.stop_request is not None:
            self.printer.say(f"{self.stop_request.how}: stopping the router, then the bridges")
        for group in ([self.router] if self.router is not None else [], self.bridges):
            pids = self._live_pids(group)
            if pids:
                self.env.stop(pids, 0 if self.hurry else self.options.grace_s)
        for child in self._children():
            child.exit_code()  # reap
            child.drain()
            child.log.close()
        remove_state()
        os.close(self._death_write)
        os.close(self._death_read)

    def _write_state(self) -> None:
        entries = []
        for child in self._children():
            # A child waiting for its restart stays listed: `status` shows it down, by its last pid.
            if child.proc is None or child.identity is None:
                continue
            entries.append(
                ProcessEntry(
                    name=child.name,
                    kind=child.kind,
                    pid=child.proc.pid,
                    pgid=child.identity[1],
                    create_time=child.identity[0],
                    port=child.port,
                    url=child.url,
                    restarts=child.restarts,
                    given_up=child.given_up,
                )
            )
        me = procs.identity(os.getpid())
        assert me is not None
        write_state(
            UpState(
                config=self.config_path,
                started_at=self.started_at,
                base_url=self.base_url,
                log_dir=str(self.options.log_dir),
                supervisor=ProcessEntry(
                    name="supervisor", kind="supervisor", pid=os.getpid(), pgid=me[1], create_time=me[0]
                ),
                children=entries,
            )
        )

    # -- the whole life ---------------------------------------------------------------------------

    def run(self) -> int:
        """The exit status: the stop request's (STOP_REQUESTS) after a requested stop, 1 after a
        failure; everything started is stopped either way."""
        restore = self.env.on_signals(self._on_signal)
        failed = True  # until proven otherwise: an unexpected error is a failure too
        try:
            self.start()
            self.watch()
            failed = False
        except _Stopped:
            failed = False
        except (PortInUse, Failure) as exc:
            self.printer.say(f"error: {exc}")
        finally:
            try:
                self.stop()
            finally:
                restore()
                self.printer.say("fusionkit up: stopped after a failure" if failed else "fusionkit up: stopped")
                self.printer.close()
        if failed or self.stop_request is None:
            return 1
        return self.stop_request.exit_code
