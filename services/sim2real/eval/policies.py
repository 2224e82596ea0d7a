"""What the evaluator drives: ``act(depth_m, pose, world) -> action index``.

Only the expert reads ``pose`` and ``world`` (it is privileged); a deployable policy sees the depth
image alone, exactly as on the robot.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sim2real.contracts.actions import LEFT
from sim2real.contracts.scenario import Expert, Robot, Scenario
from sim2real.sim.expert import expert_action
from sim2real.sim.world import Pose2D, World

BUILTIN_POLICIES = ("expert", "spin")


class Policy:
    """A policy under evaluation. ``kind`` is "expert", "spin" or "model"."""

    kind: str = ""
    name: str = ""
    sha256: str | None = None

    def act(self, depth_m: np.ndarray, pose: Pose2D, world: World) -> int:
        raise NotImplementedError


class ExpertPolicy(Policy):
    """The privileged expert on the TRUE pose: the ceiling a learned policy is compared to."""

    kind = name = "expert"

    def __init__(self, scenario: Scenario | None = None):
        self.radius = scenario.robot.radius_m if scenario is not None else Robot().radius_m
        self.rule = scenario.episode.expert if scenario is not None else Expert()

    def act(self, depth_m: np.ndarray, pose: Pose2D, world: World) -> int:
        return expert_action(world, pose, self.radius, self.rule)


class SpinPolicy(Policy):
    """Always LEFT: never collides, never gets anywhere. The success metric must fail it."""

    kind = name = "spin"

    def act(self, depth_m: np.ndarray, pose: Pose2D, world: World) -> int:
        return LEFT


class ModelPolicyAdapter(Policy):
    """A deployed model (``runtime.policy.ModelPolicy``): depth only, the shipped preprocessing."""

    kind = "model"

    def __init__(self, model_path: str | Path, engine: str = "auto"):
        from sim2real.runtime.policy import ModelPolicy

        self.model = ModelPolicy(model_path, backend=engine)
        self.name = str(model_path)
        self.sha256 = self.model.sha256
        self.last_latency_ms = 0.0

    def act(self, depth_m: np.ndarray, pose: Pose2D, world: World) -> int:
        t0 = time.perf_counter()
        action = self.model.act(depth_m)
        self.last_latency_ms = (time.perf_counter() - t0) * 1e3
        return action


def make_policy(model: str | Path, engine: str = "auto", scenario: Scenario | None = None) -> Policy:
    """``"expert"``, ``"spin"`` or the path of an exported model.

    ``scenario`` gives the expert its robot radius and rule (the contract defaults without one).
    """
    text = str(model)
    if text == "expert":
        return ExpertPolicy(scenario)
    if text == "spin":
        return SpinPolicy()
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {path} (or use one of: {', '.join(BUILTIN_POLICIES)})")
    return ModelPolicyAdapter(path, engine)
