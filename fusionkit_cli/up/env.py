"""The supervisor's seam to the system: time, signals, processes and health probes.

`SystemEnv` is the real thing. Tests hand the supervisor a fake one, as honcho does with its
`Env`, to drive start-up, crashes, back-off and signals without real sleeps, processes or kills.

    env = SystemEnv()
    proc = env.spawn([sys.executable, "-m", "fusionkit_cli.main", ...], {"PYTHONUNBUFFERED": "1"}, death_fd)
    env.probe("http://127.0.0.1:41234")   # True once GET /health answers 200
"""

from __future__ import annotations

import http.client
import signal
import time
import urllib.parse
from collections.abc import Callable
from typing import IO, Protocol

from fusionkit_cli.up import procs

__all__ = ["DOWN_SIGNAL", "STOP_SIGNALS", "Env", "Process", "SignalHandler", "SystemEnv", "probe_health"]

SignalHandler = Callable[[int], None]

# `fusionkit down` asks with its own signal, so `up` can tell it from a SIGTERM sent by anyone else
# and exit 0 after it (130 after SIGINT, 143 after SIGTERM).
DOWN_SIGNAL = signal.SIGUSR1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, DOWN_SIGNAL)


class Process(Protocol):
    """What the supervisor needs of a spawned process (`subprocess.Popen` is one)."""

    @property
    def pid(self) -> int: ...

    @property
    def stdout(self) -> IO[bytes] | None: ...

    @property
    def returncode(self) -> int | None:
        """Set once the process has been reaped (by `poll`)."""

    def poll(self) -> int | None: ...


class Env(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""

    def sleep(self, seconds: float) -> None: ...

    def spawn(self, args: list[str], env: dict[str, str], death_fd: int) -> Process:
        """Start `args` in its own process group, output on one pipe, tied to the supervisor's life."""

    def probe(self, url: str) -> bool:
        """Whether `url`/health answers 200 right now (within PROBE_TIMEOUT_S: a hung server fails it)."""

    def identity(self, pid: int) -> tuple[float, int] | None:
        """(create_time, pgid) of a live process, for the state file; None once it is gone."""

    def stop(self, pids: list[int], grace_s: float) -> None:
        """Stop these processes' whole trees: SIGTERM, then SIGKILL after `grace_s`."""

    def kill_now(self, pids: list[int]) -> None:
        """SIGKILL these processes' groups at once; safe to call from a signal handler."""

    def on_signals(self, handler: SignalHandler) -> Callable[[], None]:
        """Route STOP_SIGNALS to `handler`; returns a function that restores the previous handlers."""


def probe_health(url: str, timeout_s: float = 0.5) -> bool:
    """GET `url`/health with the stdlib: a probe needs no TLS context, pool or extra import time."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout_s)
    try:
        conn.request("GET", "/health")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


# Long enough for a bridge busy with a full event loop to answer, short enough that a hung one
# holds the supervisor's loop only a moment.
PROBE_TIMEOUT_S = 2.0


class SystemEnv:
    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def spawn(self, args: list[str], env: dict[str, str], death_fd: int) -> Process:
        return procs.spawn(args, env, death_fd)

    def probe(self, url: str) -> bool:
        return probe_health(url, PROBE_TIMEOUT_S)

    def identity(self, pid: int) -> tuple[float, int] | None:
        return procs.identity(pid)

    def stop(self, pids: list[int], grace_s: float) -> None:
        procs.stop_trees(pids, grace_s)

    def kill_now(self, pids: list[int]) -> None:
        procs.kill_groups(pids)

    def on_signals(self, handler: SignalHandler) -> Callable[[], None]:
        previous = {sig: signal.signal(sig, lambda signum, _frame: handler(signum)) for sig in STOP_SIGNALS}

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore
