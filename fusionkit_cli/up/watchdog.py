"""Runs inside each child of `fusionkit up`: exit when the supervisor is gone, even if it was SIGKILLed.

The supervisor holds the only write end of a pipe whose read end each child inherits (its fd
number is in FUSIONKIT_PARENT_FD). Nobody ever writes to it; EOF means the supervisor died.
This backs up PR_SET_PDEATHSIG, which only fires for the death of the spawning thread.
"""

from __future__ import annotations

import os
import signal
import threading
import time

__all__ = ["ENV_VAR", "start_watchdog"]

ENV_VAR = "FUSIONKIT_PARENT_FD"
GRACE_S = 3.0


def _watch(fd: int) -> None:
    try:
        while os.read(fd, 1):
            pass
    except OSError:
        pass
    os.kill(os.getpid(), signal.SIGTERM)  # a graceful stop first
    time.sleep(GRACE_S)
    os._exit(1)


def start_watchdog() -> None:
    value = os.environ.get(ENV_VAR)
    if not value or not value.isdigit():
        return
    threading.Thread(target=_watch, args=(int(value),), name="fusionkit-watchdog", daemon=True).start()
