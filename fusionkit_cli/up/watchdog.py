"""Runs inside each child of `fusionkit up`: exit when the supervisor is gone, even if it was SIGKILLed.

The supervisor holds the only write end of a pipe whose read end each child inherits (its fd
number is in FUSIONKIT_PARENT_FD). Nobody ever writes to it; EOF means the supervisor died.
This backs up PR_SET_PDEATHSIG, which only fires for the death of the spawning thread and only
on Linux. `run_server` calls `start_watchdog()`; without the variable it does nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import threading
import time

__all__ = ["ENV_VAR", "start_watchdog"]

ENV_VAR = "FUSIONKIT_PARENT_FD"
GRACE_S = 3.0


def _watch(fd: int) -> None:
    with contextlib.suppress(OSError):
        while os.read(fd, 1):
            pass
    os.kill(os.getpid(), signal.SIGTERM)  # a graceful stop first (uvicorn finishes what it can)
    time.sleep(GRACE_S)
    os._exit(1)


def start_watchdog() -> None:
    value = os.environ.get(ENV_VAR, "")
    if not value.isdigit():
        return
    fd = int(value)
    try:
        is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        is_pipe = False
    if not is_pipe:  # a variable inherited from somewhere else: not our pipe, so no watchdog
        return
    os.set_inheritable(fd, False)  # our own subprocesses need not hold it
    threading.Thread(target=_watch, args=(fd,), name="fusionkit-watchdog", daemon=True).start()
