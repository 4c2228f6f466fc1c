"""The client's stop sequences, applied to the answer it receives, streamed or whole.

Members and the synthesizer are asked to stop there too, but not every upstream honours `stop`,
and a selected candidate's text must obey the same rule, so the engine cuts the final answer
itself. While streaming, text that could be the start of a stop sequence is held back until the
next piece shows whether it is one.

    cutter = StopCutter(["\\n\\n", "END"])
    cutter.feed("Hello EN")   # -> "Hello "   ("EN" is held back)
    cutter.feed("D more")     # -> ""         (stopped)
    cutter.flush()            # -> ""
"""

from __future__ import annotations

__all__ = ["StopCutter", "cut_at_stop"]


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """`text` up to the first stop sequence, and whether one was found."""
    hits = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return (text[: min(hits)], True) if hits else (text, False)


class StopCutter:
    """Cuts a stream of text pieces at the first stop sequence."""

    def __init__(self, stops: list[str]) -> None:
        self.stops = [s for s in stops if s]
        self.stopped = False
        self._held = ""

    def feed(self, piece: str) -> str:
        """The part of `piece` that can be sent now."""
        if self.stopped:
            return ""
        if not self.stops:
            return piece
        text, found = cut_at_stop(self._held + piece, self.stops)
        if found:
            self.stopped, self._held = True, ""
            return text
        hold = self._partial_stop(text)
        self._held = text[len(text) - hold :]
        return text[: len(text) - hold]

    def flush(self) -> str:
        """What was held back, once the stream has ended without reaching a stop sequence."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def reset(self) -> None:
        """Forget a text that will not be sent after all (a synthesis that failed before reaching the client)."""
        self.stopped, self._held = False, ""

    def _partial_stop(self, text: str) -> int:
        """The length of the longest end of `text` that begins a stop sequence."""
        for size in range(min(len(text), max(len(s) for s in self.stops) - 1), 0, -1):
            if any(s.startswith(text[-size:]) for s in self.stops):
                return size
        return 0
