"""One supervised process: its command, port and health URL, its output reader, its restart count.

A `Child` only runs and watches one process; the `Supervisor` decides when to start, restart and
stop it. The port is passed last (`--port N`), so a child whose automatic port was taken can be
moved to another one.

    child = Child("fast", "bridge", [sys.executable, "-m", "fusionkit_cli.main", "serve-endpoint", ...],
                  port=41234, printer=printer, log=LogFile(path))
    child.spawn(env, death_fd); env.probe(child.url); child.exit_code()
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from fusionkit_cli.up.env import Env, Process
from fusionkit_cli.up.printer import LogFile, Printer
from fusionkit_cli.up.watchdog import ENV_VAR

__all__ = ["Child"]

TAIL_LINES = 20


@dataclass(eq=False)
class Child:
    name: str
    kind: str  # "bridge" | "router"
    command: list[str]
    port: int
    printer: Printer
    log: LogFile
    description: str = ""
    host: str = "127.0.0.1"  # where the supervisor reaches it
    auto_port: bool = False
    # Added to the inherited environment: how secrets reach a child (argv and up.json are readable by others).
    extra_env: dict[str, str] = field(default_factory=dict, repr=False)
    proc: Process | None = None
    identity: tuple[float, int] | None = None  # (create_time, pgid) of the last process spawned, for up.json
    restarts: int = 0
    spawned_at: float = 0.0
    healthy_at: float | None = None  # None until it answered /health since its last spawn
    failed_probes: int = 0  # /health probes failed in a row since it was last healthy
    next_probe: float = 0.0
    given_up: bool = False  # crash-looped past the restart limit: left down, never restarted
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    _reader: threading.Thread | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def spawn(self, env: Env, death_fd: int) -> None:
        child_env = {**os.environ, **self.extra_env, "PYTHONUNBUFFERED": "1", ENV_VAR: str(death_fd)}
        self.recent.clear()
        self.healthy_at = None
        self.failed_probes = 0
        self.proc = env.spawn([*self.command, "--port", str(self.port)], child_env, death_fd)
        self.spawned_at = env.now()
        self.identity = env.identity(self.proc.pid)
        self.log.write(f"--- fusionkit up: {self.name} started, pid {self.proc.pid}, port {self.port} ({time.ctime()})")
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True, name=f"read-{self.name}")
        self._reader.start()

    def _read(self, proc: Process) -> None:
        if proc.stdout is None:
            return
        for raw in proc.stdout:
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            self.recent.append(text)
            self.log.write(text)
            self.printer.line(self.name, text)

    def exit_code(self) -> int | None:
        """The exit status once the process has ended (and is reaped), else None."""
        return self.proc.poll() if self.proc is not None else None

    def drain(self, timeout_s: float = 1.0) -> None:
        """Wait for the output reader to reach the end, so `recent` holds the last lines."""
        if self._reader is not None:
            self._reader.join(timeout_s)

    @property
    def last_line(self) -> str:
        recent = list(self.recent)
        return recent[-1] if recent else ""

    def tail(self) -> str:
        self.drain()
        recent = list(self.recent)  # a copy: the reader may still append
        lines = "\n".join(f"    {line}" for line in recent) or "    (no output)"
        return f"last {len(recent)} log line{'' if len(recent) == 1 else 's'} ({self.log.path}):\n{lines}"
