"""How busy the machine is with work that is not the benchmark's own.

    with ForeignLoad() as load:
        ...                      # run a scenario
    load.cores                   # other processes' CPU while it ran, in cores (0.5 = half a core)

The benchmark's own CPU is its process's plus that of every child it has waited for (the OS
adds a reaped child's time, and its reaped descendants', to the parent), so at the end of a
scenario, whose processes are all stopped and waited for, the rest of the machine's busy time
is someone else's. On a shared 2-core machine that is what decides whether a number is fair.
"""

from __future__ import annotations

import os
import time
from types import TracebackType

import psutil

__all__ = ["ForeignLoad", "reference_ms", "wait_until_quiet"]


def _busy_s() -> float:
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0))


def _own_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class ForeignLoad:
    """Other processes' CPU, in cores, over the length of a `with` block."""

    def __init__(self) -> None:
        self.cores = 0.0

    def __enter__(self) -> ForeignLoad:
        self._start = (time.monotonic(), _busy_s(), _own_s())
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        wall, busy, own = self._start
        elapsed = time.monotonic() - wall
        foreign = (_busy_s() - busy) - (_own_s() - own)
        self.cores = round(max(foreign, 0.0) / elapsed, 2) if elapsed > 0 else 0.0


def wait_until_quiet(max_wait_s: float, below_cores: float = 0.15, window_s: float = 2.0) -> float:
    """Wait (at most `max_wait_s`) for a `window_s` in which others use less than `below_cores`; their load then."""
    deadline = time.monotonic() + max_wait_s
    while True:
        with ForeignLoad() as load:
            time.sleep(window_s)
        if load.cores < below_cores or time.monotonic() >= deadline:
            return load.cores


def reference_ms(iterations: int = 1_000_000) -> float:
    """CPU ms for a fixed pure-Python loop: how fast this machine's cores are right now.

    On a virtual machine the host's other tenants change it (by 1.5x on the project's machine,
    unseen from inside), so each scenario records it next to its numbers.
    """
    started = time.process_time()
    total = 0
    for i in range(iterations):
        total += i
    return round((time.process_time() - started) * 1000, 1)
