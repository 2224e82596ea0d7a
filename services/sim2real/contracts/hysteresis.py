"""Turn hysteresis: the deployed runtime commits to a turn until the way ahead is clear.

The model is stateless: each image gives logits, and a view that keeps changing while the robot
turns in place can flip its choice between left and right (dithering: the robot turns back and
forth and never leaves). :class:`TurnHysteresis` is the one stateful layer over it, run by the
evaluator, the ROS 2 node and ``replay`` alike:

- uncommitted, it passes the model's choice through (an exact left/right tie resolves to LEFT, as
  :func:`~sim2real.contracts.actions.choose` says) and a turn commits it to that side;
- committed, it keeps turning that way, whatever side the model prefers, until the model chooses
  FORWARD with a probability of at least ``min_forward_prob`` on ``clear_steps`` images in a row;
  then it drives forward and forgets the side.

Mirror equivariance over sequences: mirroring every image of a sequence (the model's left and right
logits swap) mirrors every command, because the layer only ever compares left with right through
the model's choice and keeps the side it chose. The one exception is the tie rule: an exact tie
while uncommitted commits to LEFT in both the sequence and its mirror (and is reported as a tie).

The parameters travel in the model (``runtime`` block of the manifest and of the contract inside
the file, :mod:`sim2real.contracts.model_contract`); ``clear_steps: 0`` turns the layer off. A
model without the block runs without it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from sim2real.contracts.actions import FORWARD, choose

RUNTIME_VERSION = 1
MAX_CLEAR_STEPS = 50


@dataclass(frozen=True)
class HysteresisParams:
    """``clear_steps`` FORWARD choices in a row (each with probability ≥ ``min_forward_prob``) end a turn."""

    clear_steps: int = 2
    min_forward_prob: float = 0.0

    def __post_init__(self):
        if isinstance(self.clear_steps, bool) or not isinstance(self.clear_steps, int) \
                or not 0 <= self.clear_steps <= MAX_CLEAR_STEPS:
            raise ValueError(f"hysteresis clear_steps must be a whole number from 0 (off) to {MAX_CLEAR_STEPS}, "
                             f"got {self.clear_steps!r}")
        if isinstance(self.min_forward_prob, bool) or not isinstance(self.min_forward_prob, (int, float)) \
                or not 0.0 <= self.min_forward_prob <= 1.0:
            raise ValueError(f"hysteresis min_forward_prob must be a probability from 0 to 1, "
                             f"got {self.min_forward_prob!r}")

    @property
    def enabled(self) -> bool:
        return self.clear_steps > 0

    def describe(self) -> str:
        if not self.enabled:
            return "off"
        return f"{self.clear_steps},{self.min_forward_prob:g}"


OFF = HysteresisParams(clear_steps=0)
DEFAULT = HysteresisParams()


def runtime_block(params: HysteresisParams = DEFAULT) -> dict:
    """The ``runtime`` block a model carries (manifest and contract)."""
    return {"version": RUNTIME_VERSION, "hysteresis": asdict(params)}


def from_block(block: dict | None) -> HysteresisParams:
    """The hysteresis of a model's ``runtime`` block (None: a model without one runs without it)."""
    if block is None:
        return OFF
    if not isinstance(block, dict) or block.get("version") != RUNTIME_VERSION:
        raise ValueError(f"runtime block version {block.get('version') if isinstance(block, dict) else None!r} "
                         f"is not {RUNTIME_VERSION}")
    values = block.get("hysteresis")
    if not isinstance(values, dict) or set(values) != {"clear_steps", "min_forward_prob"}:
        raise ValueError(f"runtime.hysteresis must hold clear_steps and min_forward_prob, got {values!r}")
    return HysteresisParams(**values)


def parse(text: str, model: HysteresisParams) -> HysteresisParams:
    """An override: ``model`` (the model's own), ``off``, or ``K`` / ``K,P`` (clear_steps, min_forward_prob)."""
    text = str(text).strip().lower()
    if text == "model":
        return model
    if text == "off":
        return OFF
    parts = text.split(",")
    try:
        if len(parts) > 2:
            raise ValueError
        steps = int(parts[0])
        prob = float(parts[1]) if len(parts) == 2 else 0.0
    except ValueError:
        raise ValueError(f"hysteresis must be 'model', 'off' or K[,P] (clear steps, min forward probability), "
                         f"got {text!r}") from None
    return HysteresisParams(clear_steps=steps, min_forward_prob=prob)


def forward_probability(logits) -> float:
    values = [float(v) for v in logits]
    top = max(values)
    weights = [math.exp(v - top) for v in values]
    return weights[FORWARD] / sum(weights)


class TurnHysteresis:
    """The stateful layer: ``step(logits) -> (action, tie)``; ``reset()`` at the start of an episode."""

    def __init__(self, params: HysteresisParams = DEFAULT):
        self.params = params
        self.committed: int | None = None
        self.clear = 0

    def reset(self) -> None:
        self.committed, self.clear = None, 0

    def step(self, logits) -> tuple[int, bool]:
        """The action for this image's logits, and whether it came from the tie rule."""
        action, tie = choose(logits)
        if not self.params.enabled:
            return action, tie
        if self.committed is None:
            if action != FORWARD:
                self.committed = action
            return action, tie
        if action == FORWARD and forward_probability(logits) >= self.params.min_forward_prob:
            self.clear += 1
            if self.clear >= self.params.clear_steps:
                self.reset()
                return FORWARD, False
        else:
            self.clear = 0
        return self.committed, False
