"""The action space: what the policy's three outputs mean, and the velocity each one commands.

Index order is the model's output order. Training labels, the exporter, the runtime and the
evaluator all read it from here, so an output index never changes meaning between them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Twist:
    """Planar velocity command: linear.x in m/s, angular.z in rad/s (ROS REP 103: left is +z)."""

    linear_x: float
    angular_z: float


ACTIONS: tuple[str, ...] = ("forward", "left", "right")
FORWARD, LEFT, RIGHT = range(3)
# The action a mirrored (left-right flipped) scene calls for, by index: forward stays, left and right swap.
MIRROR: tuple[int, ...] = (FORWARD, RIGHT, LEFT)

FORWARD_SPEED_MPS = 0.5
TURN_RATE_RADPS = 0.5

STOP = Twist(0.0, 0.0)


def twist_for(action: int, forward_speed: float = FORWARD_SPEED_MPS,
              turn_rate: float = TURN_RATE_RADPS) -> Twist:
    """The command for an action index; speeds are robot parameters, the meaning is not."""
    if action == FORWARD:
        return Twist(forward_speed, 0.0)
    if action == LEFT:
        return Twist(0.0, turn_rate)
    if action == RIGHT:
        return Twist(0.0, -turn_rate)
    raise ValueError(f"action index {action!r} is not one of 0..{len(ACTIONS) - 1} {ACTIONS}")


def choose(logits) -> tuple[int, bool]:
    """The action for a model's logits, and whether it came from an exact left/right tie.

    The highest logit wins. Left and right tied exactly for the highest (what a mirror-symmetric
    view gives a mirror-equivariant model) resolve to LEFT, as the expert resolves equally free
    sides; such decisions are reported as ties.
    """
    values = [float(v) for v in logits]
    best = max(values)
    action = values.index(best)
    tie = values[LEFT] == values[RIGHT] == best and action != FORWARD
    return (LEFT if tie else action), tie


# A driver's command → the action it means (validate's labels, shadow mode's agreement): a turn when
# |angular.z| reaches ANGULAR_THRESHOLD_RADPS (left for +z), else forward when linear.x reaches
# LINEAR_THRESHOLD_MPS, else stopped (None: reversing and creeping count as stopped).
ANGULAR_THRESHOLD_RADPS = 0.3
LINEAR_THRESHOLD_MPS = 0.05
# An image's driver label is the command in effect REACTION_LAG_S after it (the driver reacts to
# what the camera saw), if that command is at most COMMAND_MAX_AGE_S old (validate, ingest, shadow).
REACTION_LAG_S = 0.3
COMMAND_MAX_AGE_S = 0.5


@dataclass(frozen=True)
class CommandThresholds:
    """Where a continuous command becomes a class; see :func:`command_class`."""

    angular_z: float = ANGULAR_THRESHOLD_RADPS
    linear_x: float = LINEAR_THRESHOLD_MPS

    def __post_init__(self):
        for name in ("angular_z", "linear_x"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0 < value < float("inf")):
                raise ValueError(f"command threshold {name} must be a finite number > 0, got {value!r}")


def command_class(linear_x: float, angular_z: float, thresholds: CommandThresholds = CommandThresholds()) -> int | None:
    """The action index a command means, or None for a stop (or a non-finite command).

    The turn decides first: a joystick that turns while creeping forward is turning.
    """
    if not (abs(linear_x) < float("inf") and abs(angular_z) < float("inf")):
        return None
    if abs(angular_z) >= thresholds.angular_z:
        return LEFT if angular_z > 0 else RIGHT
    if linear_x >= thresholds.linear_x:
        return FORWARD
    return None


def spec() -> dict:
    """The action space as recorded in every model manifest."""
    return {
        "actions": list(ACTIONS),
        "twist": {name: [twist_for(i).linear_x, twist_for(i).angular_z] for i, name in enumerate(ACTIONS)},
    }
