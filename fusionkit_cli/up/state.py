"""`.fusionkit/up.json`: what a running `up` started, so `status` and `down` work from another terminal.

It holds pids, process groups, create times (so a reused pid is never mistaken for ours), ports
and URLs; never environment values or keys. Written with mode 0600.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import psutil
from pydantic import BaseModel, ValidationError

__all__ = ["ProcessEntry", "UpState", "is_ours", "read_state", "write_state"]

STATE_PATH = Path(".fusionkit") / "up.json"


class ProcessEntry(BaseModel):
    name: str
    kind: str  # "bridge" | "router" | "supervisor"
    pid: int
    create_time: float
    port: int | None = None
    url: str | None = None
    restarts: int = 0


class UpState(BaseModel):
    config: str
    started_at: float
    base_url: str
    supervisor: ProcessEntry
    children: list[ProcessEntry]


def write_state(state: UpState, path: Path = STATE_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(state.model_dump_json(indent=2))
    os.replace(tmp, path)


def read_state(path: Path = STATE_PATH) -> UpState | None:
    try:
        return UpState.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError, ValidationError):
        return None


def remove_state(path: Path = STATE_PATH) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def is_ours(entry: ProcessEntry) -> psutil.Process | None:
    """The live process of `entry`, unless its pid now belongs to someone else."""
    try:
        proc = psutil.Process(entry.pid)
        if abs(proc.create_time() - entry.create_time) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE:
            return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    return None
