"""The progress line of an eval on stderr: tasks done, answers, cost so far, elapsed time and ETA.

    progress = Progress(tasks=30, answers=120)
    progress.answered(cost=0.0021, task_finished=False)
    progress.close()

On a terminal the line is redrawn in place; elsewhere (a log, CI) a line is written at most every
few seconds, and once at the end.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress"]

LOG_EVERY_S = 5.0


def _duration(seconds: float) -> str:
    whole = max(0, round(seconds))
    return f"{whole // 60}m{whole % 60:02d}s" if whole >= 60 else f"{whole}s"


class Progress:
    def __init__(
        self,
        *,
        tasks: int,
        answers: int,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
        label: str = "eval",
    ) -> None:
        self.tasks, self.answers = tasks, answers
        self.tasks_done = self.answers_done = 0
        self.cost = 0.0
        self.stream = stream or sys.stderr
        self.clock = clock
        self.label = label
        self.started = clock()
        self._last_logged = self.started
        self._live = bool(getattr(self.stream, "isatty", lambda: False)())

    def line(self) -> str:
        elapsed = self.clock() - self.started
        eta = "?"
        if self.answers_done:
            eta = _duration(elapsed / self.answers_done * (self.answers - self.answers_done))
        return (
            f"{self.label}: tasks {self.tasks_done}/{self.tasks} · answers {self.answers_done}/{self.answers} · "
            f"cost ${self.cost:.4f} · {_duration(elapsed)} elapsed · ETA {eta}"
        )

    def answered(self, *, cost: float, task_finished: bool) -> None:
        self.answers_done += 1
        self.cost += cost
        self.tasks_done += task_finished
        now = self.clock()
        if self._live:
            self.stream.write("\r\033[K" + self.line())
            self.stream.flush()
        elif now - self._last_logged >= LOG_EVERY_S:
            self._last_logged = now
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def note(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self._live else "") + text + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.write(("\r\033[K" if self._live else "") + self.line() + "\n")
        self.stream.flush()
