"""Process trees: spawning a child that dies with the supervisor, and stopping whole trees.

A child gets its own session (so its own process group: one signal reaches its whole tree),
PR_SET_PDEATHSIG on Linux, and the read end of the death pipe (see `watchdog`). Stopping is a
bounded escalation: SIGTERM to every group, wait, SIGKILL what is left, then a sweep of every
descendant seen before the first signal. Leftovers named in a state file are only signalled
when their create time proves they are still ours.

    proc = spawn([sys.executable, "-m", "fusionkit_cli.main", "serve-endpoint", ...], env, death_fd)
    stop_trees([proc.pid], grace_s=5)
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
from collections.abc import Callable

import psutil

__all__ = ["identity", "kill_groups", "spawn", "stop_trees"]

PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Callable[..., int] | None:
    # Resolved here, before any fork: the child must not have to load anything between fork and exec.
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None
    return prctl


def _die_with(parent_pid: int) -> Callable[[], None] | None:
    prctl = _prctl()
    if prctl is None:
        return None

    def hook() -> None:  # pragma: no cover - runs in the child between fork and exec
        # PDEATHSIG fires when the *thread* that forked us exits: the supervisor spawns from its main thread.
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent_pid:  # the supervisor died before the prctl took hold
            os._exit(1)

    return hook


def spawn(args: list[str], env: dict[str, str], death_fd: int) -> subprocess.Popen[bytes]:
    """Start `args` (never through a shell) in a new session, stdout and stderr on one pipe."""
    return subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        pass_fds=(death_fd,),
        start_new_session=True,
        preexec_fn=_die_with(os.getpid()),
    )


def identity(pid: int) -> tuple[float, int] | None:
    """(create_time, pgid) of a live process."""
    try:
        return psutil.Process(pid).create_time(), os.getpgid(pid)
    except (psutil.NoSuchProcess, psutil.AccessDenied, ProcessLookupError):
        return None


def _tree(pids: list[int]) -> list[psutil.Process]:
    found: list[psutil.Process] = []
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            parent = psutil.Process(pid)
            found += [parent, *parent.children(recursive=True)]
    return found


def _signal_groups(procs: list[psutil.Process], sig: signal.Signals) -> None:
    own_group = os.getpgid(0)
    for proc in procs:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            group = os.getpgid(proc.pid)
            if group != own_group:
                os.killpg(group, sig)
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.send_signal(sig)


def stop_trees(pids: list[int], grace_s: float = 5.0) -> None:
    """SIGTERM each tree's group, wait up to `grace_s`, SIGKILL what is left of the snapshot."""
    snapshot = _tree(pids)  # taken before signalling: a reparented grandchild is still found
    _signal_groups(snapshot, signal.SIGTERM)
    _, alive = psutil.wait_procs(snapshot, timeout=grace_s)
    if alive:
        _signal_groups(alive, signal.SIGKILL)
        psutil.wait_procs(alive, timeout=2)


def kill_groups(pids: list[int]) -> None:
    """SIGKILL the process group each pid leads; plain syscalls only, so a signal handler may call it."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
