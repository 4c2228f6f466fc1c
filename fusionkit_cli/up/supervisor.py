"""The `fusionkit up` supervisor: start the bridges, gate on health, start the router, watch, stop.

    supervisor = Supervisor(config, config_path, options)
    code = supervisor.run()        # blocks until Ctrl-C / SIGTERM / `fusionkit down` or a failure

Start: configured ports are checked before anything is spawned; bridges start together; each
must answer /health before its deadline (a bridge that exits fails the start at once, with its
last log lines); then the router starts, pointed at the bridges. Watch: a child that dies is
restarted with exponential backoff; too many restarts in the window and everything stops.
Stop: the router first, then the bridges, each group SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx2
import psutil

from fusionkit_cli.up.child import Child
from fusionkit_cli.up.clock import Clock, SystemClock
from fusionkit_cli.up.policy import RestartPolicy
from fusionkit_cli.up.ports import PortInUse, check_free, free_port
from fusionkit_cli.up.printer import LogFile, Printer
from fusionkit_cli.up.state import ProcessEntry, UpState, remove_state, write_state
from server.config import PanelConfig

__all__ = ["StartFailed", "Supervisor", "UpOptions"]

POLL_S = 0.05
STATE_DIR = Path(".fusionkit")


class StartFailed(Exception):
    """The stack could not start; the message says which child and why."""


@dataclass
class UpOptions:
    host: str = "127.0.0.1"
    port: int | None = None
    log_dir: Path = STATE_DIR / "logs"
    colour: bool | None = None
    ready_timeout_s: float = 30.0
    grace_s: float = 5.0


class Supervisor:
    def __init__(self, config: PanelConfig, config_path: str, options: UpOptions, clock: Clock | None = None) -> None:
        self.config = config
        self.config_path = str(Path(config_path).resolve())
        self.options = options
        self.clock = clock or SystemClock()
        names = [e.id for e in config.endpoints] + ["router"]
        self.printer = Printer(max(len(n) for n in names), colour=options.colour)
        self.router_port = options.port or config.server.port
        self.base_url = (
            f"http://{'127.0.0.1' if options.host in ('0.0.0.0', '::') else options.host}:{self.router_port}"
        )
        self.bridges: list[Child] = []
        self.router: Child | None = None
        self.policies: dict[str, RestartPolicy] = {}
        self.pending_restarts: dict[str, float] = {}
        self.stop_requested = False
        self.stop_signal: str | None = None
        self.started_at = time.time()
        self._death_read, self._death_write = os.pipe()
        self._http = httpx2.Client()

    # -- signals ----------------------------------------------------------------------------------

    def _on_signal(self, signum: int, _: FrameType | None) -> None:
        # Only flags here: the handler runs between any two bytecodes of the main thread, which may be
        # holding the printer's lock, so printing from here could deadlock.
        if self.stop_requested:
            self.options.grace_s = 0  # a second Ctrl-C: no more grace
            raise KeyboardInterrupt
        self.stop_requested = True
        self.stop_signal = signal.Signals(signum).name

    # -- start ------------------------------------------------------------------------------------

    def _plan(self) -> None:
        """Ports first: a configured port in use is reported before anything is spawned."""
        check_free(self.options.host, self.router_port, "the router (server.port / --port)")
        for endpoint in self.config.endpoints:
            if endpoint.port is not None:
                check_free("127.0.0.1", endpoint.port, f"endpoint '{endpoint.id}' (endpoints[].port)")
        for endpoint in self.config.endpoints:
            port = endpoint.port or free_port()
            args = [
                sys.executable,
                "-m",
                "fusionkit_cli.main",
                "serve-endpoint",
                "--config",
                self.config_path,
                "--endpoint",
                endpoint.id,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
            self.bridges.append(self._child(endpoint.id, args, port, "bridge", f"{endpoint.provider}/{endpoint.model}"))
        bridges_file = STATE_DIR / "bridges.json"
        bridges_file.parent.mkdir(parents=True, exist_ok=True)
        bridges_file.write_text(json.dumps({c.name: c.url for c in self.bridges}, indent=2))
        args = [
            sys.executable,
            "-m",
            "fusionkit_cli.main",
            "serve",
            "--config",
            self.config_path,
            "--bridges",
            str(bridges_file.resolve()),
            "--host",
            self.options.host,
            "--port",
            str(self.router_port),
        ]
        self.router = self._child("router", args, self.router_port, "router", "fusion router")
        self.router.url = self.base_url

    def _child(self, name: str, args: list[str], port: int, kind: str, description: str) -> Child:
        log = LogFile(self.options.log_dir / f"{name}.log")
        self.policies[name] = RestartPolicy()
        return Child(
            name=name,
            args=args,
            url=f"http://127.0.0.1:{port}",
            printer=self.printer,
            log=log,
            death_fd=self._death_read,
            kind=kind,
            port=port,
            description=description,
        )

    def _await_healthy(self, children: list[Child]) -> None:
        started = self.clock.now()
        waiting = list(children)
        while waiting:
            if self.stop_requested:
                raise StartFailed("stopped during start-up")
            for child in list(waiting):
                code = child.exit_code()
                if code is not None:
                    raise StartFailed(self._failure(child, f"exited with status {code} during start-up"))
                if child.healthy(self._http):
                    waiting.remove(child)
                    elapsed = self.clock.now() - started
                    self.printer.say(
                        f"  ready  {child.name:<{self.printer.width}}  {child.description:<28} "
                        f"port {child.port}  in {elapsed:.2f}s"
                    )
            if self.clock.now() - started > self.options.ready_timeout_s:
                child = waiting[0]
                raise StartFailed(
                    self._failure(child, f"not healthy after {self.options.ready_timeout_s:.0f}s (--ready-timeout)")
                )
            self.clock.sleep(POLL_S)

    @staticmethod
    def _failure(child: Child, what: str) -> str:
        lines = "\n".join(f"    {line}" for line in child.log.tail(20)) or "    (no output)"
        return f"{child.kind} '{child.name}' {what}. Last log lines ({child.log.path}):\n{lines}"

    def start(self) -> None:
        self._plan()
        self.printer.say(f"fusionkit up: {len(self.bridges)} bridges for {self.config_path}")
        for child in self.bridges:
            child.spawn()
        self._write_state()
        self._await_healthy(self.bridges)
        assert self.router is not None
        self.router.spawn()
        self._write_state()
        self._await_healthy([self.router])
        self.printer.say(self._banner())

    def _banner(self) -> str:
        models = [
            "fusionkit/panel",
            "fusionkit/router",
            "fusionkit/self",
            "fusionkit/single",
            *(e.id for e in self.config.endpoints),
        ]
        mocks = [e.id for e in self.config.endpoints if e.is_mock]
        lines = [
            "",
            f"FusionKit is ready at {self.base_url}/v1",
            f"  models: {', '.join(models)}",
        ]
        if mocks:
            lines.append(f"  note: {', '.join(mocks)} are OFFLINE MOCK models (provider 'mock')")
        lines += [
            "",
            "  curl:",
            f"    curl -s {self.base_url}/v1/chat/completions -H 'Content-Type: application/json' \\",
            '      -d \'{"model": "fusionkit/panel", "messages": [{"role": "user", "content": "Hello"}]}\'',
            "",
            "  python:",
            "    from openai import OpenAI",
            f'    client = OpenAI(base_url="{self.base_url}/v1", api_key="unused")',
            '    client.chat.completions.create(model="fusionkit/panel", '
            'messages=[{"role": "user", "content": "Hello"}])',
            "",
            f"  logs: {self.options.log_dir}/<name>.log    status: fusionkit status    stop: Ctrl-C or fusionkit down",
            "",
        ]
        return "\n".join(lines)

    # -- watch ------------------------------------------------------------------------------------

    def _children(self) -> list[Child]:
        return [*self.bridges, *([self.router] if self.router else [])]

    def watch(self) -> None:
        while not self.stop_requested:
            now = self.clock.now()
            for child in self._children():
                if child.name in self.pending_restarts:
                    if now >= self.pending_restarts[child.name]:
                        del self.pending_restarts[child.name]
                        child.restarts += 1
                        self.printer.say(f"restarting {child.name} (restart {child.restarts})")
                        child.spawn()
                        self._write_state()
                    continue
                code = child.exit_code()
                if code is None or child.expected_exit:
                    continue
                delay = self.policies[child.name].next_delay(now)
                if delay is None:
                    policy = self.policies[child.name]
                    raise StartFailed(
                        self._failure(
                            child,
                            f"exited with status {code} and was restarted {policy.max_restarts} times in "
                            f"{policy.window_s:.0f}s; giving up",
                        )
                    )
                self.printer.say(f"{child.kind} '{child.name}' exited with status {code}; restarting in {delay:.0f}s")
                self.pending_restarts[child.name] = now + delay
            self.clock.sleep(0.2)

    # -- stop -------------------------------------------------------------------------------------

    def stop(self) -> None:
        if self.stop_signal:
            self.printer.say(f"\n{self.stop_signal} received: stopping (router first, then bridges)")
        for child in [*([self.router] if self.router else []), *self.bridges]:
            child.stop(self.options.grace_s)
        for child in self._children():
            child.log.close()
        remove_state()
        os.close(self._death_write)
        os.close(self._death_read)
        self._http.close()

    def _write_state(self) -> None:
        me = psutil.Process()
        entries = []
        for child in self._children():
            if child.proc is None or child.pid is None:
                continue
            try:
                created = psutil.Process(child.pid).create_time()
            except psutil.NoSuchProcess:
                continue
            entries.append(
                ProcessEntry(
                    name=child.name,
                    kind=child.kind,
                    pid=child.pid,
                    create_time=created,
                    port=child.port,
                    url=child.url,
                    restarts=child.restarts,
                )
            )
        write_state(
            UpState(
                config=self.config_path,
                started_at=self.started_at,
                base_url=self.base_url,
                supervisor=ProcessEntry(name="supervisor", kind="supervisor", pid=me.pid, create_time=me.create_time()),
                children=entries,
            )
        )

    # -- the whole life ---------------------------------------------------------------------------

    def run(self) -> int:
        """0 after a requested stop, 1 after a failure; everything started is stopped either way."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        code = 0
        try:
            self.start()
            self.watch()
        except PortInUse as exc:
            self.printer.say(f"error: {exc}")
            code = 1
        except StartFailed as exc:
            if not self.stop_requested:
                self.printer.say(f"error: {exc}")
                code = 1
        except KeyboardInterrupt:
            code = 0
        finally:
            try:
                self.stop()
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        if code == 0:
            self.printer.say("fusionkit up: stopped")
        return code
