"""`.fusionkit/up.json`: what a running `up` started, so `status` and `down` work from another terminal.

It holds pids, process groups, create times (so a reused pid is never mistaken for ours), ports,
URLs, the config path and the start time; never environment values or keys. Mode 0600.

    write_state(UpState(...)); state = read_state()
    stop_leftovers(state)      # after the supervisor died: stop what it left, never a stranger
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

import psutil
from pydantic import BaseModel, ValidationError

from fusionkit_cli.up.procs import stop_trees

__all__ = ["STATE_PATH", "ProcessEntry", "UpState", "is_ours", "read_state", "remove_state", "stop_leftovers"]

STATE_PATH = Path(".fusionkit") / "up.json"


class ProcessEntry(BaseModel):
    name: str
    kind: str  # "bridge" | "router" | "supervisor"
    pid: int
    pgid: int
    create_time: float
    port: int | None = None
    url: str | None = None
    restarts: int = 0
    given_up: bool = False  # a bridge past its restart limit, left down while the rest serve


class UpState(BaseModel):
    config: str
    started_at: float
    base_url: str
    log_dir: str
    supervisor: ProcessEntry
    children: list[ProcessEntry]


def write_state(state: UpState, path: Path = STATE_PATH) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(state.model_dump_json(indent=2))
    os.replace(tmp, path)  # readers never see half a file


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


def stop_leftovers(state: UpState, grace_s: float = 5.0) -> list[str]:
    """Stop the children a dead supervisor left behind; returns the names of those signalled.

    A leader that is still ours is stopped as a tree. A leader that is gone may have left members
    in its group; the group id is then safe to signal, because the kernel does not hand out a pid
    while a process group of that number exists. A pid now used by someone else is left alone.
    """
    owned, orphan_groups, names = [], [], []
    for entry in state.children:
        if entry.pid == os.getpid() or entry.pgid == os.getpgid(0):
            continue  # never ourselves, whatever the file says
        if is_ours(entry) is not None:
            owned.append(entry.pid)
            names.append(entry.name)
        elif not psutil.pid_exists(entry.pgid) and _group_has_members(entry.pgid):
            orphan_groups.append(entry.pgid)
            names.append(entry.name)
    for pgid in orphan_groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    if owned:
        stop_trees(owned, grace_s)
    return names


def _group_has_members(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True
