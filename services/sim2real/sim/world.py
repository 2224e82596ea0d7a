"""A concrete scene sampled from a scenario: the same World feeds every simulator backend.

Sampling happens once, here, with numpy; backends only build what they are given. That is what
makes a MuJoCo scene and a PyBullet scene of the same seed the same scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim2real.contracts.scenario import Scenario


@dataclass(frozen=True)
class Obstacle:
    """An upright primitive on the floor. ``size`` is the radius (cylinder) or half-extents x, y (box)."""

    shape: str
    x: float
    y: float
    yaw: float
    size: tuple[float, float]
    height: float

    def footprint_radius(self) -> float:
        return self.size[0] if self.shape == "cylinder" else math.hypot(*self.size)


@dataclass(frozen=True)
class Pose2D:
    x: float
    y: float
    yaw: float


@dataclass(frozen=True)
class CameraSample:
    """Per-image camera parameters after randomization."""

    mount_height_m: float
    pitch_deg: float
    hfov_deg: float
    stereo_sigma_per_m2: float
    dropout: float


@dataclass
class World:
    arena_size: tuple[float, float]
    wall_height: float
    wall_thickness: float
    obstacles: list[Obstacle] = field(default_factory=list)

    def walls(self) -> list[Obstacle]:
        """The four arena walls as boxes whose inner faces bound the arena."""
        sx, sy = self.arena_size[0] / 2, self.arena_size[1] / 2
        t = self.wall_thickness / 2
        h = self.wall_height
        return [
            Obstacle("box", sx + t, 0.0, 0.0, (t, sy + 2 * t), h),
            Obstacle("box", -sx - t, 0.0, 0.0, (t, sy + 2 * t), h),
            Obstacle("box", 0.0, sy + t, 0.0, (sx + 2 * t, t), h),
            Obstacle("box", 0.0, -sy - t, 0.0, (sx + 2 * t, t), h),
        ]

    def solids(self) -> list[Obstacle]:
        return self.obstacles + self.walls()

    def clearance(self, x: float, y: float) -> float:
        """Distance from a point to the nearest obstacle surface or wall (negative inside one)."""
        return float(min(_distance_to(o, x, y) for o in self.solids()))


def _distance_to(o: Obstacle, x: float, y: float) -> float:
    dx, dy = x - o.x, y - o.y
    if o.shape == "cylinder":
        return math.hypot(dx, dy) - o.size[0]
    c, s = math.cos(-o.yaw), math.sin(-o.yaw)
    lx, ly = abs(c * dx - s * dy) - o.size[0], abs(s * dx + c * dy) - o.size[1]
    outside = math.hypot(max(lx, 0.0), max(ly, 0.0))
    return outside + min(max(lx, ly), 0.0)


def sample_world(scenario: Scenario, rng: np.random.Generator) -> World:
    """Place obstacles uniformly in the arena, keeping ``min_gap_m`` between them."""
    a, ob = scenario.arena, scenario.obstacles
    world = World(tuple(a.size_m), a.wall_height_m, a.wall_thickness_m)
    target = int(rng.integers(ob.count[0], ob.count[1] + 1))
    half_x, half_y = a.size_m[0] / 2, a.size_m[1] / 2
    for _ in range(target * 50):
        if len(world.obstacles) >= target:
            break
        shape = ob.shapes[int(rng.integers(len(ob.shapes)))]
        if shape == "cylinder":
            r = float(rng.uniform(*ob.size_m))
            size = (r, r)
        else:
            size = (float(rng.uniform(*ob.size_m)), float(rng.uniform(*ob.size_m)))
        candidate = Obstacle(
            shape,
            float(rng.uniform(-half_x, half_x)),
            float(rng.uniform(-half_y, half_y)),
            float(rng.uniform(-math.pi, math.pi)),
            size,
            float(rng.uniform(*ob.height_m)),
        )
        reach = candidate.footprint_radius()
        if min(half_x - abs(candidate.x), half_y - abs(candidate.y)) < reach:
            continue
        if all(math.hypot(candidate.x - o.x, candidate.y - o.y) - o.footprint_radius() - reach >= ob.min_gap_m
               for o in world.obstacles):
            world.obstacles.append(candidate)
    return world


def sample_free_pose(world: World, clearance: float, rng: np.random.Generator, tries: int = 1000) -> Pose2D:
    """A pose whose position is at least ``clearance`` from every surface; heading uniform."""
    half_x, half_y = world.arena_size[0] / 2, world.arena_size[1] / 2
    for _ in range(tries):
        x, y = float(rng.uniform(-half_x, half_x)), float(rng.uniform(-half_y, half_y))
        if world.clearance(x, y) >= clearance:
            return Pose2D(x, y, float(rng.uniform(-math.pi, math.pi)))
    raise RuntimeError(f"no free pose with {clearance:.2f} m clearance after {tries} tries: arena too crowded")


def sample_camera(scenario: Scenario, rng: np.random.Generator) -> CameraSample:
    """The camera for one image: the scenario's values, replaced by randomization ranges where set."""
    cam, rnd, noise = scenario.camera, scenario.randomization, scenario.noise

    def pick(rng_range, fixed):
        return float(rng.uniform(*rng_range)) if rng_range is not None else float(fixed)

    return CameraSample(
        mount_height_m=pick(rnd.camera_height_m, cam.mount_height_m),
        pitch_deg=pick(rnd.camera_pitch_deg, cam.pitch_deg),
        hfov_deg=pick(rnd.camera_hfov_deg, cam.hfov_deg),
        stereo_sigma_per_m2=pick(rnd.stereo_sigma_per_m2, noise.stereo_sigma_per_m2),
        dropout=pick(rnd.dropout, noise.dropout),
    )


def nominal_camera(scenario: Scenario) -> CameraSample:
    """The camera without randomization: what evaluation uses."""
    cam, noise = scenario.camera, scenario.noise
    return CameraSample(cam.mount_height_m, cam.pitch_deg, cam.hfov_deg, noise.stereo_sigma_per_m2, noise.dropout)
