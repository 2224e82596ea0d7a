"""The simulator backend interface. Callers pick a backend by name from ``sim2real.sim.registry``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from sim2real.contracts.actions import Twist
from sim2real.contracts.scenario import Scenario
from sim2real.sim.world import CameraSample, Pose2D, World


@dataclass(frozen=True)
class StepResult:
    pose: Pose2D
    collided: bool


class SimBackend(ABC):
    """One simulator. ``render_depth`` returns float32 z-depth in metres with NaN for invalid pixels.

    ``can_drive`` backends simulate the robot's dynamics (evaluation); others only render at a pose
    they are given (data generation). A backend that cannot honour a scenario key raises
    ``UnsupportedScenario`` naming it; it never ignores it.
    """

    name: str = ""
    can_drive: bool = False

    def __init__(self, scenario: Scenario):
        self.scenario = scenario

    @abstractmethod
    def load(self, world: World) -> None:
        """Build the scene (replacing any previous one)."""

    @abstractmethod
    def render_depth(self, pose: Pose2D, camera: CameraSample, rng: np.random.Generator) -> np.ndarray:
        """The depth image the robot's camera sees at ``pose``, sensor model applied."""

    def reset_robot(self, pose: Pose2D) -> None:
        raise NotImplementedError(f"the {self.name} backend renders only; it does not simulate a robot")

    def step(self, command: Twist, dt: float) -> StepResult:
        raise NotImplementedError(f"the {self.name} backend renders only; it does not simulate a robot")

    def move_people(self, world: World) -> None:
        """Put the world's people where they now stand (``sim.people.step_people`` moved them)."""
        if world.people:
            raise UnsupportedScenario(f"{self.name} backend: obstacles.people: moving people are not simulated here")

    def robot_pose(self) -> Pose2D:
        raise NotImplementedError(f"the {self.name} backend renders only; it does not simulate a robot")

    def close(self) -> None:
        """Release the simulator."""


class UnsupportedScenario(ValueError):
    """A scenario key this backend cannot honour."""
