"""Starting and stopping the processes a benchmark measures, and waiting for them to be healthy.

    with spawn(["-m", "bench.upstream", "--port", str(port)]) as proc:
        seconds = wait_healthy(f"http://127.0.0.1:{port}", proc)

Every process is stopped when its `with` block ends, however it ends (SIGTERM, then SIGKILL).
Its stderr goes to a temporary file whose tail is shown if it dies early.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil

__all__ = ["free_port", "probe", "rss_mb", "spawn", "stop", "wait_healthy"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def probe(url: str, path: str = "/health", timeout_s: float = 0.5) -> int | None:
    """The HTTP status of `GET url+path`, or None when nothing answers: a raw socket, so polling costs little."""
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout_s) as sock:
            sock.sendall(
                f"GET {parts.path.rstrip('/')}{path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode()
            )
            line = sock.makefile("rb").readline()
    except OSError:
        return None
    fields = line.split()
    return int(fields[1]) if len(fields) >= 2 and fields[1].isdigit() else None


def wait_healthy(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 30, path: str = "/health") -> float:
    """Seconds until `url + path` answered 200; fails at once if the process exits."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}{_stderr_tail(proc)}")
        if probe(url, path) == 200:
            return time.perf_counter() - started
        time.sleep(0.005)
    raise RuntimeError(f"{url} not healthy after {timeout_s}s{_stderr_tail(proc)}")


def _stderr_tail(proc: subprocess.Popen[bytes]) -> str:
    log = getattr(proc, "stderr_path", None)
    if log is None or not Path(log).exists():
        return ""
    return "\n" + "\n".join(Path(log).read_text(errors="replace").splitlines()[-20:])


@contextlib.contextmanager
def spawn(args: list[str], cwd: Path | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """`python ARGS` as a child process for the length of the block."""
    with tempfile.NamedTemporaryFile(prefix="bench-", suffix=".err", delete=False) as err:
        proc = subprocess.Popen([sys.executable, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
    proc.stderr_path = err.name  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        stop(proc)
        Path(err.name).unlink(missing_ok=True)


def stop(proc: subprocess.Popen[bytes], grace_s: float = 10) -> None:
    """SIGTERM, then SIGKILL after `grace_s`."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def rss_mb(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)
