"""The supervisor's output: whole lines prefixed with the child's name, and each child's log file.

One writer thread owns the terminal, so lines never interleave, and a terminal (or pipe) that
stops reading never blocks a child or the supervisor: past `MAX_QUEUED` lines, children's lines
are dropped from the screen (counted and reported; the log files keep everything).

    printer = Printer(width=10)
    printer.line("fast", "GET /health 200")   # "fast       | GET /health 200", coloured on a terminal
    printer.say("fusionkit up: 3 bridges")     # the supervisor's own message, never dropped
    printer.close()
"""

from __future__ import annotations

import os
import sys
import threading
from collections import deque
from pathlib import Path
from typing import IO

__all__ = ["LogFile", "Printer", "use_colour"]

_COLOURS = ("36", "33", "32", "35", "34", "31", "96", "93")
MAX_QUEUED = 10_000


def use_colour(out: IO[str], no_color_flag: bool = False) -> bool:
    """Colour only on a terminal, and never with --no-color or a non-empty NO_COLOR (no-color.org)."""
    return not no_color_flag and not os.environ.get("NO_COLOR") and out.isatty()


class Printer:
    def __init__(self, width: int, *, colour: bool = False, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        self.colour = colour
        self.width = width
        self._palette: dict[str, str] = {}
        self._queue: deque[str] = deque()
        self._dropped = 0
        self._closing = False
        self._ready = threading.Condition()
        self._writer = threading.Thread(target=self._write_loop, name="fusionkit-printer", daemon=True)
        self._writer.start()

    def _prefix(self, name: str) -> str:
        label = f"{name:<{self.width}} |"
        if not self.colour:
            return label
        code = self._palette.setdefault(name, _COLOURS[len(self._palette) % len(_COLOURS)])
        return f"\033[{code}m{label}\033[0m"

    def line(self, name: str, text: str) -> None:
        """A line of a child's output."""
        with self._ready:
            if len(self._queue) >= MAX_QUEUED:
                self._dropped += 1
                return
            self._queue.append(f"{self._prefix(name)} {text}\n")
            self._ready.notify()

    def say(self, text: str) -> None:
        """A message from the supervisor itself."""
        with self._ready:
            self._queue.append(text + "\n")
            self._ready.notify()

    def _write_loop(self) -> None:
        while True:
            with self._ready:
                self._ready.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    return
                batch = "".join(self._queue)
                self._queue.clear()
                dropped, self._dropped = self._dropped, 0
            if dropped:
                batch = f"[{dropped} lines not shown: output was not read fast enough; see the log files]\n" + batch
            try:
                self.out.write(batch)
                self.out.flush()
            except (OSError, ValueError):  # closed terminal or broken pipe: keep supervising without a screen
                return

    def close(self, timeout_s: float = 2.0) -> None:
        """Write what is queued, waiting at most `timeout_s` for a slow reader."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        self._writer.join(timeout_s)


class LogFile:
    """A child's log file under the log dir; appended across restarts and runs."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh: IO[str] | None = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            if self._fh is not None:  # a reader thread may outlive the supervisor's stop by a moment
                self._fh.write(text + "\n")
                self._fh.flush()

    def tail(self, count: int = 20) -> list[str]:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace").splitlines()[-count:]
        except OSError:
            return []

    def close(self) -> None:
        with self._lock:
            if self._fh is not None:
                self._fh.close()
                self._fh = None
