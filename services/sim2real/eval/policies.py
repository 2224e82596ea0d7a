"""What the evaluator drives: ``command(depth_m, pose, world, robot) -> Twist``.

Most policies choose an action index (``act``) and the robot's speeds turn it into a Twist; the
ROS 2 node policy (:mod:`sim2real.eval.ros2_policy`) answers with the Twist the node published.

Only the expert reads ``pose`` and ``world`` (it is privileged); a deployable policy sees the depth
image alone, exactly as on the robot.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sim2real.contracts import hysteresis
from sim2real.contracts.actions import LEFT, Twist, twist_for
from sim2real.contracts.camera import Intrinsics
from sim2real.contracts.evaluation import BUILTIN_POLICIES, POLICY_TRANSPORTS
from sim2real.contracts.scenario import Expert, Robot, Scenario
from sim2real.sim.expert import expert_action
from sim2real.sim.world import Pose2D, World


class Policy:
    """A policy under evaluation. ``kind`` is "expert", "spin", "model" (in-process) or "ros2".

    ``ties`` counts the decisions that came from an exact left/right tie (None where the policy
    cannot tell, e.g. through ROS 2, where only the Twist comes back).
    """

    kind: str = ""
    name: str = ""
    sha256: str | None = None
    ties: int | None = None

    def act(self, depth_m: np.ndarray, pose: Pose2D, world: World) -> int:
        raise NotImplementedError

    def command(self, depth_m: np.ndarray, pose: Pose2D, world: World, robot: Robot) -> Twist:
        """The velocity command for this frame (by default, the robot's twist for ``act``)."""
        return twist_for(self.act(depth_m, pose, world), robot.forward_speed_mps, robot.turn_rate_radps)

    def reset(self) -> None:
        """A new episode starts (a stateful policy forgets the last one)."""

    def close(self) -> None:
        """Release what the policy holds (processes, sessions); safe to call twice."""


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
    """A deployed model (``runtime.policy.ModelPolicy``): depth only, the shipped preprocessing, the
    scenario camera's intrinsics (as CameraInfo gives them on the robot), the turn hysteresis the
    model carries (or ``turns``: ``model``, ``off``, ``K[,P]``), reset at every episode."""

    kind = "model"

    def __init__(self, model_path: str | Path, engine: str = "auto", scenario: Scenario | None = None,
                 turns: str = "model"):
        from sim2real.runtime.policy import ModelPolicy

        self.model = ModelPolicy(model_path, backend=engine)
        self.name = str(model_path)
        self.sha256 = self.model.sha256
        self.intrinsics = scenario_intrinsics(scenario)
        if self.intrinsics is not None:
            self.model.mapping(self.intrinsics).check()
        self.last_latency_ms = 0.0
        self.ties = 0
        self.turns = hysteresis.TurnHysteresis(hysteresis.parse(turns, self.model.hysteresis))
        self.hysteresis = self.turns.params.describe()

    def reset(self) -> None:
        self.turns.reset()

    def act(self, depth_m: np.ndarray, pose: Pose2D, world: World) -> int:
        t0 = time.perf_counter()
        action, tie = self.turns.step(self.model.logits(depth_m, self.intrinsics))
        self.last_latency_ms = (time.perf_counter() - t0) * 1e3
        self.ties += tie
        return action


def scenario_intrinsics(scenario: Scenario | None) -> Intrinsics | None:
    """The intrinsics of the scenario's nominal camera (what evaluation renders), or None without one."""
    if scenario is None:
        return None
    cam = scenario.camera
    return Intrinsics.from_fov(cam.width, cam.height, cam.hfov_deg)


def make_policy(model: str | Path, engine: str = "auto", scenario: Scenario | None = None,
                via: str = "inprocess", turns: str = "model") -> Policy:
    """``"expert"``, ``"spin"`` or the path of an exported model, run ``via`` "inprocess" or "ros2".

    ``scenario`` gives the expert its robot radius and rule, and the ROS 2 node its robot's speeds
    (the contract defaults without one). ``turns`` is a model's turn hysteresis (``model``: its
    own, ``off``, ``K[,P]``; the built-in policies have none). "ros2" starts the real
    ``sim2real serve`` node: close it.
    """
    hysteresis.parse(turns, hysteresis.OFF)
    if via not in POLICY_TRANSPORTS:
        raise ValueError(f"unknown policy transport '{via}' (known: {', '.join(POLICY_TRANSPORTS)})")
    text = str(model)
    if text in BUILTIN_POLICIES:
        if via == "ros2":
            raise ValueError(f"--policy ros2 serves an exported model through the ROS 2 node; "
                             f"'{text}' runs in-process only")
        return ExpertPolicy(scenario) if text == "expert" else SpinPolicy()
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"model not found: {path} (or use one of: {', '.join(BUILTIN_POLICIES)})")
    if via == "ros2":
        from sim2real.eval.ros2_policy import Ros2NodePolicy

        return Ros2NodePolicy(path, engine, scenario, turns=turns)
    return ModelPolicyAdapter(path, engine, scenario, turns)
