"""Fail-safe state of the robot node, free of ROS so it can be tested on its own.

The node stops the robot (zero Twist) when no valid image arrived within ``timeout_s``, when an
image is unusable, or when inference fails. Each reason is logged once per stop episode, not per
frame, and the return to service is logged once with how many frames were refused meanwhile.
"""

from __future__ import annotations

import time
from typing import Callable

Log = Callable[[str, str], None]
MAX_REASONS_LOGGED = 5


class FailSafe:
    """Tracks why the robot is stopped; ``log(level, message)`` gets transitions only."""

    def __init__(self, timeout_s: float, log: Log, clock: Callable[[], float] = time.monotonic):
        if not timeout_s > 0:
            raise ValueError(f"watchdog timeout must be > 0 s, got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self._log = log
        self._clock = clock
        self._last_valid: float | None = None
        self._since: float | None = clock()
        self._reasons: list[str] = []
        self.refused = 0
        self.stops = 0

    @property
    def stopped(self) -> bool:
        return self._since is not None

    @property
    def reason(self) -> str | None:
        """The latest reason of the current stop, or None while serving."""
        return self._reasons[-1] if self._reasons else None

    def valid(self) -> None:
        """A valid image produced an action."""
        now = self._clock()
        first = self._last_valid is None
        self._last_valid = now
        if self._since is not None:
            if first and not self.refused:
                self._log("info", f"first valid depth image after {now - self._since:.2f} s: serving")
            elif self._reasons:
                self._log("info", f"{'serving' if first else 'serving again'} after {now - self._since:.2f} s "
                                  f"stopped ({self.refused} image(s) refused; reasons: {'; '.join(self._reasons)})")
            self._since, self._reasons, self.refused = None, [], 0

    def fault(self, reason: str) -> None:
        """An image was refused or inference failed: the robot stops for this frame."""
        self.refused += 1
        self._enter(reason)

    def stale(self) -> bool:
        """Watchdog tick: True (stop) when no valid image arrived within the timeout."""
        now = self._clock()
        if self._last_valid is None:
            self._enter("no valid depth image received yet")
            return True
        if now - self._last_valid > self.timeout_s:
            self._enter(f"no valid depth image for more than {self.timeout_s:g} s")
            return True
        return False

    def _enter(self, reason: str) -> None:
        if self._since is None:
            self._since = self._clock()
            self.stops += 1
        if reason in self._reasons or len(self._reasons) > MAX_REASONS_LOGGED:
            return
        self._reasons.append(reason)
        if len(self._reasons) > MAX_REASONS_LOGGED:
            self._log("warn", "publishing zero Twist: further reasons in this stop are not logged")
        else:
            self._log("warn", f"publishing zero Twist: {reason}")
