"""Running `fusionkit up` as a real process in a scratch directory, for the `up` suites."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent


def write_config(directory: Path, router_port: int, endpoints: int = 3, **extra: Any) -> Path:
    config = {
        "endpoints": [
            {"id": f"m{i}", "provider": "mock", "model": f"mock-{v}", "mock": {"seed": i}}
            for i, v in enumerate(["concise", "cautious", "structured", "other"][:endpoints])
        ],
        "default_mode": "panel",
        **extra,
        "server": {"port": router_port, "run_store": str(directory / "runs.sqlite3"), **extra.get("server", {})},
    }
    path = directory / "panel.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def run_fusionkit(directory: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one `fusionkit` command as a real process, with a deadline: a command that should refuse
    to start and instead starts serving fails the test instead of hanging it."""
    return subprocess.run(
        [sys.executable, "-m", "fusionkit_cli.main", *args],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def start_up(directory: Path, config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fusionkit_cli.main", "up", str(config), "--no-color", *args],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )


def wait_for_output(proc: subprocess.Popen[str], needle: str, timeout_s: float = 30) -> str:
    """Read the supervisor's output until `needle` appears (or it exits)."""
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    os.set_blocking(proc.stdout.fileno(), False)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line:
            seen.append(line)
            if needle in line:
                return "".join(seen)
            continue
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise AssertionError(f"never saw {needle!r}; output so far:\n{''.join(seen)}")


def wait_until(check: Callable[[], bool], timeout_s: float = 10) -> bool:
    """Whether `check()` came true within `timeout_s` (asked every 50 ms)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def exporters_of(pid: int) -> list[psutil.Process]:
    """The span exporter processes `pid` started (a router with tracing on starts one)."""
    return [
        child
        for child in psutil.Process(pid).children(recursive=True)
        if "server.observe.exporter" in " ".join(child.cmdline())
    ]


def state(directory: Path) -> dict[str, Any]:
    return dict(json.loads((directory / ".fusionkit" / "up.json").read_text()))


def alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive(pids)


def stop(proc: subprocess.Popen[str], pids: list[int]) -> None:
    """Last-resort cleanup for a test that failed half-way: nothing may outlive the test."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pid in alive(pids):
        psutil.Process(pid).kill()
