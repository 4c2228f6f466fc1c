"""Whole log lines, prefixed with the child's name (coloured on a terminal), to the screen and a file."""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import IO

__all__ = ["Printer"]

_COLOURS = ("36", "33", "32", "35", "34", "31", "96", "93")


class Printer:
    def __init__(self, width: int, *, colour: bool | None = None, out: IO[str] | None = None) -> None:
        self.out = out or sys.stdout
        if colour is None:
            colour = self.out.isatty() and "NO_COLOR" not in os.environ
        self.colour = colour
        self.width = width
        self._lock = threading.Lock()
        self._palette: dict[str, str] = {}

    def _prefix(self, name: str) -> str:
        label = f"{name:<{self.width}} |"
        if not self.colour:
            return label
        code = self._palette.setdefault(name, _COLOURS[len(self._palette) % len(_COLOURS)])
        return f"\033[{code}m{label}\033[0m"

    def line(self, name: str, text: str) -> None:
        with self._lock:
            self.out.write(f"{self._prefix(name)} {text}\n")
            self.out.flush()

    def say(self, text: str) -> None:
        """A message from the supervisor itself."""
        with self._lock:
            self.out.write(text + "\n")
            self.out.flush()


class LogFile:
    """A child's log file under the log dir; appended across restarts."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            self._fh.write(text + "\n")
            self._fh.flush()

    def tail(self, count: int = 20) -> list[str]:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace").splitlines()[-count:]
        except OSError:
            return []

    def close(self) -> None:
        self._fh.close()
