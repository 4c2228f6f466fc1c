"""When a crashed child is restarted, and when the supervisor gives up.

policy = RestartPolicy()
delay = policy.next_delay(now)     # 1, 2, 4, ... capped; None once the limit is reached
policy.stable()                    # the child stayed healthy `stable_s`: back-off starts again at 1 s
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["RestartPolicy"]


@dataclass
class RestartPolicy:
    """Exponential back-off, and at most `max_restarts` restarts in any `window_s` seconds.

    The back-off step counts restarts since the child was last stable (healthy, then up for
    `stable_s`), not since it last reached "running": a child that dies a second after every
    start keeps backing off, and the window limit still ends a slow crash loop.
    """

    base_s: float = 1.0
    cap_s: float = 30.0
    max_restarts: int = 5
    window_s: float = 300.0
    stable_s: float = 30.0
    history: deque[float] = field(default_factory=deque)
    step: int = 0

    def next_delay(self, now: float) -> float | None:
        """Record a restart at `now` and return its delay, or None when the limit is reached."""
        while self.history and now - self.history[0] > self.window_s:
            self.history.popleft()
        if len(self.history) >= self.max_restarts:
            return None
        delay = min(self.base_s * 2**self.step, self.cap_s)
        self.history.append(now)
        self.step += 1
        return delay

    def stable(self) -> None:
        self.step = 0
