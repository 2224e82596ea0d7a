"""The rate at which camera frames reach the node, against the rate the camera sends them.

A transport that drops images (see :mod:`sim2real.runtime.middleware`) shows up here long before
the watchdog stops the robot: the node still gets some frames, just too few. ROS-free, so that it
is tested without ROS.
"""

from __future__ import annotations

import collections

# Below this share of the camera's rate the node warns (a few late frames are normal; 80 % is not).
LOW_RATE_FRACTION = 0.8


class FrameRate:
    """Frames per second over a sliding window of arrival times (monotonic seconds)."""

    def __init__(self, window_s: float = 5.0):
        if not window_s > 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = window_s
        self.count = 0
        self._first: float | None = None
        self._times: collections.deque[float] = collections.deque()

    def tick(self, now: float) -> None:
        """One frame arrived at ``now``."""
        self.count += 1
        if self._first is None:
            self._first = now
        self._times.append(now)
        self._forget(now)

    def rate(self, now: float) -> float | None:
        """Frames per second over the last window (over the time since the first frame while that is
        shorter); None before the first frame."""
        if self._first is None:
            return None
        self._forget(now)
        span = min(self.window_s, now - self._first)
        if span <= 0:
            return None
        return len(self._times) / span

    def _forget(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()


def rate_warning(measured_hz: float | None, expected_hz: float) -> str | None:
    """A one-line warning when frames arrive well below the camera's rate, else None.

    ``expected_hz`` 0 means the camera's rate is unknown: nothing to compare with.
    """
    if expected_hz <= 0 or measured_hz is None or measured_hz >= LOW_RATE_FRACTION * expected_hz:
        return None
    return (f"depth images arrive at {measured_hz:.1f} Hz, well below the camera's {expected_hz:.3g} Hz: "
            f"frames are lost on the way (large images need the Fast DDS profile, docs/runtime.md#middleware)")
