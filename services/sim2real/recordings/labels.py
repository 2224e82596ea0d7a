"""The driver's recorded commands as labels: what the driver did when each image arrived.

A command is a label by two thresholds: ``|angular.z| ≥ angular_threshold`` is a turn (LEFT for
positive angular.z, REP 103), else ``linear.x ≥ linear_threshold`` is FORWARD, else STOPPED
(standing, creeping or reversing). The label of an image at time ``t`` is the command in effect
at ``t + lag`` (the driver's reaction time): the latest command at or before it, if it is at most
``max_age`` old; an older one (the joystick went quiet) or none leaves the image unlabelled.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from sim2real.contracts.actions import ACTIONS, FORWARD, LEFT, RIGHT

STOPPED = len(ACTIONS)
LABELS: tuple[str, ...] = (*ACTIONS, "stopped")
_RANGE = re.compile(r"^(?:(?P<bag>.+)@)?(?P<start>[0-9.]+):(?P<end>[0-9.]+)$")


@dataclass(frozen=True)
class Labelling:
    angular_threshold: float
    linear_threshold: float
    lag_s: float
    max_age_s: float

    def label(self, linear_x: np.ndarray, angular_z: np.ndarray) -> np.ndarray:
        """Per command: FORWARD, LEFT, RIGHT or STOPPED (int8); ``contracts.actions.command_class`` over arrays
        (a non-finite command is a stop)."""
        linear, angular = np.asarray(linear_x, float), np.asarray(angular_z, float)
        turning = np.abs(angular) >= self.angular_threshold
        labels = np.where(linear >= self.linear_threshold, FORWARD, STOPPED)
        labels = np.where(turning, np.where(angular > 0, LEFT, RIGHT), labels)
        labels = np.where(np.isfinite(linear) & np.isfinite(angular), labels, STOPPED)
        return labels.astype(np.int8)


class CommandTrack:
    """A bag's commands in time order; :meth:`label_at` the label in effect at a time."""

    def __init__(self, times_ns: np.ndarray, linear_x: np.ndarray, angular_z: np.ndarray, labelling: Labelling):
        self.times = np.asarray(times_ns, np.int64)
        self.labels = labelling.label(linear_x, angular_z)
        self.labelling = labelling
        self._lag = round(labelling.lag_s * 1e9)
        self._max_age = round(labelling.max_age_s * 1e9)

    def label_at(self, t_ns: int) -> int | None:
        """The label of an image at ``t_ns`` (None: no command within the maximum age)."""
        when = t_ns + self._lag
        k = int(np.searchsorted(self.times, when, side="right")) - 1
        if k < 0 or when - self.times[k] > self._max_age:
            return None
        return int(self.labels[k])


@dataclass(frozen=True)
class TimeRange:
    """Seconds from the start of a recording (``bag``: only in recordings with that name)."""

    start_s: float
    end_s: float
    bag: str | None = None

    @classmethod
    def parse(cls, text: str) -> TimeRange:
        """``START:END`` or ``NAME@START:END`` (seconds from the bag's first message)."""
        match = _RANGE.match(text.strip())
        try:
            start, end = float(match["start"]), float(match["end"])
        except (TypeError, ValueError):
            raise ValueError(f"--exclude {text!r} is not START:END or BAG@START:END in seconds from the "
                             f"recording's start") from None
        if not 0 <= start < end:
            raise ValueError(f"--exclude {text!r}: START must be ≥ 0 and before END")
        return cls(start, end, match["bag"])

    def covers(self, bag_name: str, t_s: float) -> bool:
        return (self.bag is None or self.bag == bag_name) and self.start_s <= t_s < self.end_s
