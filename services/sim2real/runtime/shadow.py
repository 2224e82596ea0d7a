"""Shadow mode's agreement with the driver, free of ROS so it can be tested on its own.

In shadow mode (``sim2real serve --shadow``) the node commands nothing: what it would command goes
to a shadow topic, and it listens to the driver's commands. Each of its decisions is compared with
the driver's command in effect ``lag_s`` after the image (the driver reacts to what the camera saw),
if that command is at most ``max_age_s`` old. Both sides are classes
(:func:`sim2real.contracts.actions.command_class`, the labelling ``validate`` uses too):

- the driver stopped: left out of agreement, but the policy going forward then is **unsafe**;
- the driver turned and the policy went forward: unsafe too (and a disagreement);
- the policy stopped (fail-safe) while the driver moved: a disagreement;
- no driver command recent enough: counted as ``no_teleop``, left out.

Figures cover the decisions of the last ``window_s`` seconds.
"""

from __future__ import annotations

import bisect
import collections
from dataclasses import dataclass

from sim2real.contracts.actions import (
    ACTIONS,
    COMMAND_MAX_AGE_S,
    FORWARD,
    REACTION_LAG_S,
    CommandThresholds,
    command_class,
)


@dataclass(frozen=True)
class Decision:
    """One image's outcome once the driver's command for it is known."""

    t: float
    policy: int | None
    driver: int | None
    compared: bool

    @property
    def agrees(self) -> bool:
        return self.compared and self.driver is not None and self.policy == self.driver

    @property
    def unsafe(self) -> bool:
        return self.compared and self.policy == FORWARD and self.driver != FORWARD


class ShadowAgreement:
    """Rolling agreement between the policy's decisions and the driver's commands (times in seconds)."""

    def __init__(self, window_s: float = 30.0, lag_s: float = REACTION_LAG_S, max_age_s: float = COMMAND_MAX_AGE_S,
                 thresholds: CommandThresholds = CommandThresholds()):
        for name, value, low in (("window_s", window_s, 0.0), ("max_age_s", max_age_s, 0.0)):
            if not low < value < float("inf"):
                raise ValueError(f"shadow {name} must be a finite number > 0, got {value!r}")
        if not 0.0 <= lag_s < float("inf"):
            raise ValueError(f"shadow lag_s must be a finite number ≥ 0, got {lag_s!r}")
        self.window_s, self.lag_s, self.max_age_s = float(window_s), float(lag_s), float(max_age_s)
        self.thresholds = thresholds
        self._teleop_t: list[float] = []
        self._teleop_class: list[int | None] = []
        self._pending: collections.deque[tuple[float, int | None]] = collections.deque()
        self._decided: collections.deque[Decision] = collections.deque()
        self.teleop_messages = 0

    def teleop(self, t: float, linear_x: float, angular_z: float) -> None:
        """The driver commanded (``linear_x``, ``angular_z``) at ``t``."""
        if self._teleop_t and t < self._teleop_t[-1]:
            t = self._teleop_t[-1]
        self._teleop_t.append(t)
        self._teleop_class.append(command_class(linear_x, angular_z, self.thresholds))
        self.teleop_messages += 1

    def policy(self, t: float, action: int | None) -> None:
        """The policy decided ``action`` (None: it stopped) for an image received at ``t``."""
        self._pending.append((t, action))

    def _driver_at(self, t: float) -> tuple[bool, int | None]:
        """(known, class) of the driver's command in effect at ``t``."""
        i = bisect.bisect_right(self._teleop_t, t) - 1
        if i < 0 or t - self._teleop_t[i] > self.max_age_s:
            return False, None
        return True, self._teleop_class[i]

    def update(self, now: float) -> None:
        """Settle the decisions whose driver command is due, and forget what left the window."""
        while self._pending and self._pending[0][0] + self.lag_s <= now:
            t, action = self._pending.popleft()
            known, driver = self._driver_at(t + self.lag_s)
            self._decided.append(Decision(t, action, driver, known))
        while self._decided and self._decided[0].t < now - self.window_s:
            self._decided.popleft()
        keep_from = now - self.window_s - self.lag_s - self.max_age_s
        cut = max(bisect.bisect_left(self._teleop_t, keep_from) - 1, 0)
        if cut:
            del self._teleop_t[:cut], self._teleop_class[:cut]

    def summary(self, now: float) -> dict:
        """The window's figures: agreement (None without a compared frame), counts, unsafe rate."""
        self.update(now)
        decided = list(self._decided)
        compared = [d for d in decided if d.compared]
        moving = [d for d in compared if d.driver is not None]
        unsafe = sum(d.unsafe for d in compared)
        per_class = {name: sum(1 for d in moving if d.driver == i) for i, name in enumerate(ACTIONS)}
        return {"window_s": self.window_s, "decisions": len(decided), "compared": len(moving),
                "agreement": round(sum(d.agrees for d in moving) / len(moving), 4) if moving else None,
                "driver_stopped": len(compared) - len(moving), "no_teleop": len(decided) - len(compared),
                "policy_stopped": sum(1 for d in moving if d.policy is None),
                "unsafe": unsafe, "unsafe_rate": round(unsafe / len(compared), 4) if compared else None,
                "driver_classes": per_class}
