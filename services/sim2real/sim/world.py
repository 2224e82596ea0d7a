"""A concrete scene sampled from a scenario: the same World feeds every simulator backend.

Sampling happens once, here, with numpy; backends only build what they are given. That is what
makes a MuJoCo scene and a PyBullet scene of the same seed the same scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim2real.contracts.camera import Intrinsics, camera_rotation
from sim2real.contracts.scenario import Camera, Scenario
from sim2real.sim import kinds
from sim2real.sim.kinds.base import PRIMITIVES, Obstacle

__all__ = [
    "PRIMITIVES",
    "CameraSample",
    "Obstacle",
    "Person",
    "Pose2D",
    "StartRegion",
    "World",
    "camera_extrinsics",
    "image_size",
    "nominal_camera",
    "sample_camera",
    "sample_free_pose",
    "sample_world",
]


@dataclass(frozen=True)
class Pose2D:
    x: float
    y: float
    yaw: float


@dataclass(frozen=True)
class CameraSample:
    """Per-image camera parameters after randomization (mounting, intrinsics, sensor model).

    ``roll_deg``, ``yaw_offset_deg`` and ``lateral_m`` are mounting jitter: roll about the optical
    axis, heading offset from the robot's, sideways offset (+ = left). ``width`` / ``height`` of
    None, and ``min_range_m`` of None, mean the scenario camera's; ``max_return_m`` of 0 means every
    surface within the render's reach returns.
    """

    mount_height_m: float
    pitch_deg: float
    hfov_deg: float
    stereo_sigma_per_m2: float
    dropout: float
    roll_deg: float = 0.0
    yaw_offset_deg: float = 0.0
    lateral_m: float = 0.0
    edge_hole_prob: float = 0.0
    edge_jump_m: float = 0.1
    shadow_baseline_m: float = 0.0
    quantization_m: float = 0.0
    quantization_mode: str = "disparity"
    min_range_m: float | None = None
    max_return_m: float = 0.0
    width: int | None = None
    height: int | None = None

    def size(self, camera: Camera) -> tuple[int, int]:
        """(width, height) of this image in pixels."""
        return (camera.width if self.width is None else self.width,
                camera.height if self.height is None else self.height)

    def intrinsics(self, camera: Camera) -> Intrinsics:
        """This image's pinhole intrinsics: centred, square pixels, ``hfov_deg`` wide."""
        return Intrinsics.from_fov(*self.size(camera), self.hfov_deg)


@dataclass(frozen=True)
class StartRegion:
    """Where start poses may lie: x and y ranges (metres) and a heading range (radians)."""

    x: tuple[float, float]
    y: tuple[float, float]
    yaw: tuple[float, float] = (-math.pi, math.pi)


@dataclass
class Person:
    """A moving obstacle (``obstacles.people``): an upright cylinder walking at ``speed`` along
    ``heading`` (radians), or toward ``target`` (``waypoints``). ``sim.people`` places and moves it."""

    x: float
    y: float
    radius: float
    height: float
    speed: float
    heading: float
    target: tuple[float, float] | None = None

    def part(self, inflate: float = 0.0) -> Obstacle:
        r = self.radius + inflate
        return Obstacle("cylinder", self.x, self.y, 0.0, (r, r), self.height, "person")


@dataclass
class World:
    """A scene. ``obstacles`` are what was drawn (one per table, say); ``parts()`` their primitives.

    ``clear_height`` is how high an underside must be for the robot to pass beneath it (its top,
    camera mast included, plus ``obstacles.overhead_margin_m``); parts at or above it are not solids.
    ``people`` move (``sim.people``); the expert keeps each one ``people_margin`` wider.
    """

    arena_size: tuple[float, float]
    wall_height: float
    wall_thickness: float
    obstacles: list[Obstacle] = field(default_factory=list)
    start_region: StartRegion | None = None
    clear_height: float = math.inf
    people: list[Person] = field(default_factory=list)
    people_margin: float = 0.0
    people_pattern: str = "bounce"
    people_rng: np.random.Generator | None = None

    def parts(self) -> list[Obstacle]:
        """Every primitive of every obstacle: what the backends build and the camera sees."""
        return [part for o in self.obstacles for part in kinds.parts(o)]

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

    def person_parts(self, inflate: float = 0.0) -> list[Obstacle]:
        """The people where they stand now, as cylinders (``inflate`` wider)."""
        return [person.part(inflate) for person in self.people]

    def solids(self) -> list[Obstacle]:
        """What the robot's footprint can touch: the parts below ``clear_height``, the arena walls, and
        the people, ``people_margin`` wider."""
        return ([part for part in self.parts() if part.z0 < self.clear_height] + self.walls()
                + self.person_parts(self.people_margin))

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


def _partitions(scenario: Scenario, size: tuple[float, float], rng: np.random.Generator) -> list[Obstacle]:
    """Interior walls: each stands out perpendicular from a random outer wall (see ``Partitions``)."""
    part = scenario.arena.partitions
    if part.count[1] <= 0:
        return []
    half_x, half_y = size[0] / 2, size[1] / 2
    t = part.thickness_m / 2
    out = []
    for _ in range(int(rng.integers(part.count[0], part.count[1] + 1))):
        side = int(rng.integers(4))                 # 0: +x wall, 1: -x wall, 2: +y wall, 3: -y wall
        along = float(rng.uniform(*part.position_frac))
        frac = float(rng.uniform(*part.length_frac))
        if side < 2:                                # runs along x, out of the x = ±half_x wall
            length = frac * size[0]
            y = -half_y + t + along * (size[1] - 2 * t)
            x = (half_x - length / 2) * (1 if side == 0 else -1)
            out.append(Obstacle("box", x, y, 0.0, (length / 2, t), scenario.arena.wall_height_m, "partition"))
        else:                                       # runs along y, out of the y = ±half_y wall
            length = frac * size[1]
            x = -half_x + t + along * (size[0] - 2 * t)
            y = (half_y - length / 2) * (1 if side == 2 else -1)
            out.append(Obstacle("box", x, y, 0.0, (t, length / 2), scenario.arena.wall_height_m, "partition"))
    return out


def _draw_obstacle(scenario: Scenario, half_x: float, half_y: float, rng: np.random.Generator) -> Obstacle:
    """One obstacle: its kind drawn from ``obstacles.shapes`` (by weight), then drawn by that kind."""
    ob = scenario.obstacles
    if ob.shape_weights is None:
        name = ob.shapes[int(rng.integers(len(ob.shapes)))]
    else:
        weights = np.asarray(ob.shape_weights, dtype=float)
        name = ob.shapes[int(rng.choice(len(ob.shapes), p=weights / weights.sum()))]
    return kinds.get(name).sample(ob, half_x, half_y, rng)


def sample_world(scenario: Scenario, rng: np.random.Generator) -> World:
    """A scene: arena size, interior walls, then obstacles placed uniformly with a gap between them.

    Obstacles keep ``min_gap_m`` (drawn per scene when it is a range) between their footprint
    circles, and from the surface of every interior wall.
    """
    a, ob = scenario.arena, scenario.obstacles
    if a.size_range_m is not None:
        size = (float(rng.uniform(*a.size_range_m[0])), float(rng.uniform(*a.size_range_m[1])))
    else:
        size = (float(a.size_m[0]), float(a.size_m[1]))
    world = World(size, a.wall_height_m, a.wall_thickness_m, start_region=_start_region(scenario, size),
                  clear_height=scenario.clear_height_m())
    partitions = _partitions(scenario, size, rng)
    world.obstacles.extend(partitions)
    gap = float(rng.uniform(*ob.min_gap_m)) if isinstance(ob.min_gap_m, tuple) else float(ob.min_gap_m)
    target = int(rng.integers(ob.count[0], ob.count[1] + 1))
    half_x, half_y = size[0] / 2, size[1] / 2
    placed: list[Obstacle] = []
    for _ in range(target * 50):
        if len(placed) >= target:
            break
        candidate = _draw_obstacle(scenario, half_x, half_y, rng)
        reach = candidate.footprint_radius()
        if min(half_x - abs(candidate.x), half_y - abs(candidate.y)) < reach:
            continue
        if all(math.hypot(candidate.x - o.x, candidate.y - o.y) - o.footprint_radius() - reach >= gap
               for o in placed) and all(_distance_to(w, candidate.x, candidate.y) - reach >= gap
                                        for w in partitions):
            placed.append(candidate)
    world.obstacles.extend(placed)
    if scenario.obstacles.people.count[1] > 0:
        from sim2real.sim.people import place_people

        place_people(scenario, world, rng)
    return world


def _start_region(scenario: Scenario, size: tuple[float, float]) -> StartRegion | None:
    sp = scenario.start_pose
    if sp.x_m is None and sp.y_m is None and tuple(sp.yaw_deg) == (-180.0, 180.0):
        return None

    def clip(rng_range, half):
        if rng_range is None:
            return (-half, half)
        lo, hi = max(rng_range[0], -half), min(rng_range[1], half)
        if lo > hi:
            raise ValueError(f"start_pose: range {list(rng_range)} lies outside the {2 * half:.2f} m arena")
        return (lo, hi)

    return StartRegion(clip(sp.x_m, size[0] / 2), clip(sp.y_m, size[1] / 2),
                       (math.radians(sp.yaw_deg[0]), math.radians(sp.yaw_deg[1])))


def sample_free_pose(world: World, clearance: float, rng: np.random.Generator, tries: int = 1000) -> Pose2D:
    """A pose at least ``clearance`` from every surface, inside the world's start region (if any)."""
    half_x, half_y = world.arena_size[0] / 2, world.arena_size[1] / 2
    region = world.start_region or StartRegion((-half_x, half_x), (-half_y, half_y))
    for _ in range(tries):
        x, y = float(rng.uniform(*region.x)), float(rng.uniform(*region.y))
        if world.clearance(x, y) >= clearance:
            return Pose2D(x, y, float(rng.uniform(*region.yaw)))
    raise RuntimeError(f"no free pose with {clearance:.2f} m clearance after {tries} tries: arena too crowded")


def sample_camera(scenario: Scenario, rng: np.random.Generator) -> CameraSample:
    """The camera for one image: the scenario's values, replaced by randomization ranges where set."""
    cam, rnd, noise = scenario.camera, scenario.randomization, scenario.noise

    def pick(rng_range, fixed):
        return float(rng.uniform(*rng_range)) if rng_range is not None else fixed

    hfov = pick(rnd.camera_hfov_deg, cam.hfov_deg)
    if rnd.camera_hfov_deg is not None and rnd.hfov_step_deg > 0:
        hfov = round(hfov / rnd.hfov_step_deg) * rnd.hfov_step_deg
    width, height = (None, None)
    if rnd.camera_aspect is not None:
        width, height = image_size(cam, float(rng.uniform(*rnd.camera_aspect)))
    return CameraSample(
        mount_height_m=float(pick(rnd.camera_height_m, cam.mount_height_m)),
        pitch_deg=float(pick(rnd.camera_pitch_deg, cam.pitch_deg)),
        hfov_deg=float(hfov),
        stereo_sigma_per_m2=float(pick(rnd.stereo_sigma_per_m2, noise.stereo_sigma_per_m2)),
        dropout=float(pick(rnd.dropout, noise.dropout)),
        roll_deg=float(pick(rnd.camera_roll_deg, 0.0)),
        yaw_offset_deg=float(pick(rnd.camera_yaw_deg, 0.0)),
        lateral_m=float(pick(rnd.camera_lateral_m, 0.0)),
        edge_hole_prob=float(pick(rnd.edge_hole_prob, noise.edge_hole_prob)),
        edge_jump_m=float(noise.edge_jump_m),
        shadow_baseline_m=float(pick(rnd.shadow_baseline_m, noise.shadow_baseline_m)),
        quantization_m=float(pick(rnd.quantization_m, noise.quantization_m)),
        quantization_mode=noise.quantization_mode,
        min_range_m=float(pick(rnd.min_range_m, cam.min_range_m)),
        max_return_m=float(pick(rnd.max_return_m, noise.max_return_m)),
        width=width,
        height=height,
    )


def image_size(camera: Camera, aspect: float) -> tuple[int, int]:
    """The largest image of ``aspect`` (width / height) within the camera's width x height pixels."""
    if aspect >= camera.width / camera.height:
        return camera.width, max(1, round(camera.width / aspect))
    return max(1, round(camera.height * aspect)), camera.height


def nominal_camera(scenario: Scenario) -> CameraSample:
    """The camera without randomization (no mounting jitter, the noise section's values): what evaluation uses."""
    cam, noise = scenario.camera, scenario.noise
    return CameraSample(cam.mount_height_m, cam.pitch_deg, cam.hfov_deg, noise.stereo_sigma_per_m2, noise.dropout,
                        edge_hole_prob=noise.edge_hole_prob, edge_jump_m=noise.edge_jump_m,
                        shadow_baseline_m=noise.shadow_baseline_m, quantization_m=noise.quantization_m,
                        quantization_mode=noise.quantization_mode, min_range_m=cam.min_range_m,
                        max_return_m=noise.max_return_m)


def camera_extrinsics(pose: Pose2D, camera: CameraSample, forward_offset_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Where the camera is and how it is turned: ``(origin (3,), world-from-camera rotation (3, 3))``.

    The camera sits ``forward_offset_m`` ahead of the robot's centre (its front edge), ``lateral_m``
    to its left, ``mount_height_m`` up; it looks along the robot's heading plus ``yaw_offset_deg``,
    pitched down ``pitch_deg`` and rolled ``roll_deg`` about its optical axis. Every backend places
    its camera with this, so mounting jitter means the same thing in each.
    """
    c, s = math.cos(pose.yaw), math.sin(pose.yaw)
    origin = np.array([pose.x + forward_offset_m * c - camera.lateral_m * s,
                       pose.y + forward_offset_m * s + camera.lateral_m * c,
                       camera.mount_height_m])
    rotation = camera_rotation(pose.yaw + math.radians(camera.yaw_offset_deg), math.radians(camera.pitch_deg))
    if camera.roll_deg:
        cr, sr = math.cos(math.radians(camera.roll_deg)), math.sin(math.radians(camera.roll_deg))
        rotation = rotation @ np.array([[1.0, 0.0, 0.0], [0.0, cr, -sr], [0.0, sr, cr]])
    return origin, rotation
