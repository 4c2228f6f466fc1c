"""One supervised process: spawned in its own process group, tied to the supervisor's life,
its output read line by line into the printer and its log file, stopped as a whole tree.

    child = Child("fast", [sys.executable, "-m", "fusionkit_cli.main", "serve-endpoint", ...],
                  url="http://127.0.0.1:41234", printer=printer, log=LogFile(path), death_fd=fd)
    child.spawn(); child.healthy(); child.stop()
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
from dataclasses import dataclass, field

import httpx2
import psutil

from fusionkit_cli.up.printer import LogFile, Printer
from fusionkit_cli.up.watchdog import ENV_VAR

__all__ = ["Child", "stop_processes"]

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM this process when the thread that spawned it exits."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    args: list[str]
    url: str
    printer: Printer
    log: LogFile
    death_fd: int
    kind: str = "bridge"
    port: int | None = None
    description: str = ""
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    expected_exit: bool = False
    _reader: threading.Thread | None = field(default=None, repr=False)

    def spawn(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", ENV_VAR: str(self.death_fd)}
        self.expected_exit = False
        self.proc = subprocess.Popen(
            self.args,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            pass_fds=(self.death_fd,),
            start_new_session=True,  # its own process group, so a signal reaches the whole tree
            preexec_fn=_die_with_parent,
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True, name=f"read-{self.name}")
        self._reader.start()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            text = raw.decode("utf-8", "replace").rstrip("\n")
            self.log.write(text)
            self.printer.line(self.name, text)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def exit_code(self) -> int | None:
        return self.proc.poll() if self.proc else None

    def healthy(self, client: httpx2.Client) -> bool:
        try:
            return client.get(self.url + "/health", timeout=0.5).status_code == 200
        except httpx2.HTTPError:
            return False

    def stop(self, grace_s: float = 5.0) -> None:
        if self.proc is None:
            return
        self.expected_exit = True
        stop_processes([self.proc.pid], grace_s)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=1)
        if self._reader is not None:
            self._reader.join(timeout=2)


def stop_processes(pids: list[int], grace_s: float = 5.0) -> None:
    """SIGTERM each process group, wait, SIGKILL what is left, then sweep the children seen before."""
    procs: list[psutil.Process] = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            parent = psutil.Process(pid)
            procs += [parent, *parent.children(recursive=True)]
    own_group = os.getpgid(0)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError, psutil.NoSuchProcess):
            group = os.getpgid(proc.pid)
            if group != own_group:
                os.killpg(group, signal.SIGTERM)
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.terminate()
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.kill()
    psutil.wait_procs(alive, timeout=2)
