"""The robot's physics and actuators for one episode, drawn from the scenario's ``physics`` section.

:func:`sample_physics` draws a :class:`RobotPhysics` (absent keys stay nominal). The evaluator
applies its latency, jitter and dropped commands (:class:`CommandLink`); a driving backend applies
the rest through ``SimBackend.set_physics`` (:class:`MotorModel` is the wheels' response).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from sim2real.contracts.scenario import Physics

# Keys the evaluator applies itself (every driving backend honours them); the others are the backend's.
LINK_KEYS = ("latency_ms", "latency_jitter_ms", "drop_prob")


@dataclass(frozen=True)
class RobotPhysics:
    """One episode's draw. ``wheel_speed_error`` is (left, right); 0 for an acceleration limit is none."""

    wheel_friction: float = 1.0
    mass_scale: float = 1.0
    inertia_scale: float = 1.0
    wheel_speed_error: tuple[float, float] = (0.0, 0.0)
    motor_time_constant_s: float = 0.0
    wheel_accel_limit_mps2: float = 0.0
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    drop_prob: float = 0.0

    def to_dict(self) -> dict:
        return {k: [round(x, 5) for x in v] if isinstance(v, tuple) else round(v, 5) for k, v in asdict(self).items()}

    @property
    def has_motor_model(self) -> bool:
        return self.motor_time_constant_s > 0 or self.wheel_accel_limit_mps2 > 0


NOMINAL = RobotPhysics()


def sample_physics(spec: Physics, rng: np.random.Generator) -> RobotPhysics:
    """Draw every key the scenario gives (uniform in its range, the error once per wheel)."""
    drawn = {}
    for key in spec.keys():
        low, high = getattr(spec, key)
        drawn[key] = (float(rng.uniform(low, high)), float(rng.uniform(low, high))) \
            if key == "wheel_speed_error" else float(rng.uniform(low, high))
    return RobotPhysics(**drawn)


class MotorModel:
    """Each wheel follows its commanded speed through a first-order lag and a rim acceleration limit."""

    def __init__(self, physics: RobotPhysics, wheel_radius_m: float):
        self.tau = physics.motor_time_constant_s
        self.max_step_radps = physics.wheel_accel_limit_mps2 / wheel_radius_m   # per second
        self.speeds = np.zeros(2)

    def reset(self) -> None:
        self.speeds = np.zeros(2)

    def advance(self, target: tuple[float, float], h: float) -> tuple[float, float]:
        """The wheel speeds (rad/s) after ``h`` seconds of following ``target``."""
        goal = np.asarray(target, dtype=np.float64)
        wanted = goal if self.tau <= 0 else self.speeds + (goal - self.speeds) * (1.0 - math.exp(-h / self.tau))
        if self.max_step_radps > 0:
            limit = self.max_step_radps * h
            wanted = self.speeds + np.clip(wanted - self.speeds, -limit, limit)
        self.speeds = wanted
        return float(wanted[0]), float(wanted[1])


class CommandLink:
    """Between the policy and the wheels: each command takes effect after the episode's latency (plus
    ``extra_ms``) and its own jitter, in order, unless it is dropped.

    ``send(t, command)`` returns when it takes effect (None when dropped). Draws come from ``rng``
    (the episode's physics stream), so the world and the sensor noise do not depend on them.
    """

    def __init__(self, physics: RobotPhysics, extra_ms: float, rng: np.random.Generator):
        self.physics, self.extra_ms, self.rng = physics, extra_ms, rng
        self.last_arrival = -math.inf

    @property
    def instant(self) -> bool:
        """Every command takes effect at once and none is lost (the evaluator's simple path)."""
        p = self.physics
        return self.extra_ms <= 0 and p.latency_ms <= 0 and p.latency_jitter_ms <= 0 and p.drop_prob <= 0

    def send(self, t: float) -> float | None:
        p = self.physics
        if p.drop_prob > 0 and self.rng.random() < p.drop_prob:
            return None
        jitter = self.rng.uniform(0.0, p.latency_jitter_ms) if p.latency_jitter_ms > 0 else 0.0
        arrival = max(t + (self.extra_ms + p.latency_ms + jitter) / 1e3, self.last_arrival)
        self.last_arrival = arrival
        return arrival
