"""When a crashed child is restarted, and when the supervisor gives up.

policy = RestartPolicy(clock)
delay = policy.next_delay(now)     # 1, 2, 4, ... capped; None once the limit is reached
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["RestartPolicy"]


@dataclass
class RestartPolicy:
    """Exponential backoff with at most `max_restarts` restarts in any `window_s` seconds.

    Restarts older than the window stop counting, so a child that stayed up a while starts afresh.
    """

    base_s: float = 1.0
    cap_s: float = 30.0
    max_restarts: int = 5
    window_s: float = 300.0
    history: deque[float] = field(default_factory=deque)

    def next_delay(self, now: float) -> float | None:
        while self.history and now - self.history[0] > self.window_s:
            self.history.popleft()
        if len(self.history) >= self.max_restarts:
            return None
        delay = min(self.base_s * 2 ** len(self.history), self.cap_s)
        self.history.append(now)
        return delay

    @property
    def count(self) -> int:
        return len(self.history)
