"""Dithering and turning in place, counted from the commands an episode sent.

A command is *forward* when it drives ahead (``linear.x > 0``), a *turn* when it only turns (left:
``angular.z > 0``, right: ``< 0``), else a stop. A **turn reversal** is a change between left and
right with no forward command in between (stops do not separate them). A stretch of turning in
place is a run of commands without a forward one that holds at least one turn; an episode that
fails (without a collision) after such a stretch longer than ``TURN_IN_PLACE_FAIL_S`` failed by
turning in place.
"""

from __future__ import annotations

from collections.abc import Sequence

from sim2real.contracts.actions import Twist

TURN_IN_PLACE_FAIL_S = 5.0


def kind(twist: Twist) -> str:
    """``forward``, ``left``, ``right`` or ``stop``."""
    if twist.linear_x > 0:
        return "forward"
    if twist.angular_z > 0:
        return "left"
    if twist.angular_z < 0:
        return "right"
    return "stop"


def turn_reversals(commands: Sequence[Twist]) -> int:
    """Changes between left and right with no forward command in between."""
    count, last_turn = 0, None
    for twist in commands:
        k = kind(twist)
        if k == "forward":
            last_turn = None
        elif k in ("left", "right"):
            count += last_turn is not None and k != last_turn
            last_turn = k
    return count


def longest_turn_in_place_steps(commands: Sequence[Twist]) -> int:
    """The most consecutive commands without a forward one, in a run that holds a turn."""
    best = run = 0
    turned = False
    for twist in commands:
        k = kind(twist)
        if k == "forward":
            run, turned = 0, False
            continue
        run += 1
        turned = turned or k != "stop"
        if turned:
            best = max(best, run)
    return best


def failed_turning_in_place(record: dict, limit_s: float = TURN_IN_PLACE_FAIL_S) -> bool:
    """The episode failed without a collision and turned in place for longer than ``limit_s``."""
    return (not record["success"] and not record["collided"]
            and record.get("longest_turn_in_place_s", 0.0) > limit_s)
