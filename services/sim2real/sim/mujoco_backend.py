"""Simulator A: MuJoCo as a depth renderer, raycasting the World with ``mj_multiRay``.

The scene is static geometry only (floor, walls, obstacles); the robot is not modelled, the
camera is placed at the pose it is given (``world.camera_extrinsics``, so mounting jitter is
honoured). Depth is z-depth: distance along the optical axis. Rays are not normalised: each has
a forward component of 1 in the camera frame, so MuJoCo's hit distance *is* the z-depth.

Speed (the datagen budget is a few milliseconds per 224x224 image): ``mj_multiRay`` costs about a
quarter of a microsecond per ray, most of it for the floor plane and the four arena walls, which
almost every ray hits. So by default (``exact=False``) the floor and the arena's inner wall faces,
axis-aligned planes, are intersected in closed form with numpy, and MuJoCo casts only the rays
that can meet an obstacle: those inside the projected bounding box of some obstacle, against the
obstacle geoms only. The nearer of the two wins. ``exact=True`` casts every ray against the whole
MuJoCo scene; a unit test checks the two agree on sampled worlds. The fast path applies when the
camera is inside the arena and below the wall tops (always, in the built-in scenarios); otherwise
the exact path is used.
"""

from __future__ import annotations

import math
from functools import lru_cache

import mujoco
import numpy as np

from sim2real.contracts.scenario import RENDER_REACH_M, Scenario
from sim2real.sim.base import SimBackend, UnsupportedScenario
from sim2real.sim.sensors import apply_sensor_model
from sim2real.sim.world import (
    PRIMITIVES,
    CameraSample,
    Obstacle,
    Pose2D,
    World,
    camera_extrinsics,
)

OBSTACLE_GROUP = 0
ENVIRONMENT_GROUP = 3          # floor and arena walls: left out of the fast path's MuJoCo cast
_OBSTACLES_ONLY = np.array([1 if g == OBSTACLE_GROUP else 0 for g in range(6)], dtype=np.uint8)
NEAR_M = 1e-3                  # obstacle points closer than this to the image plane are clipped


def _geom_xml(o: Obstacle, group: int = OBSTACLE_GROUP) -> str:
    half_h = o.height / 2
    z = o.z0 + half_h
    quat = f"{math.cos(o.yaw / 2)!r} 0 0 {math.sin(o.yaw / 2)!r}"
    if o.shape not in PRIMITIVES:
        raise UnsupportedScenario(f"mujoco backend: unknown obstacle shape '{o.shape}'")
    if o.shape == "cylinder":
        return (f'<geom type="cylinder" group="{group}" pos="{o.x!r} {o.y!r} {z!r}" '
                f'size="{o.size[0]!r} {half_h!r}"/>')
    return (f'<geom type="box" group="{group}" pos="{o.x!r} {o.y!r} {z!r}" quat="{quat}" '
            f'size="{o.size[0]!r} {o.size[1]!r} {half_h!r}"/>')


def world_mjcf(world: World) -> str:
    """The MJCF document of a World: a floor plane and every part of every obstacle (and every person,
    where they stand) as a static geom.

    Obstacles are in geom group 0; the floor and the arena walls in group 3.
    """
    floor_x = world.arena_size[0] / 2 + 2 * world.wall_thickness
    floor_y = world.arena_size[1] / 2 + 2 * world.wall_thickness
    geoms = ([_geom_xml(o) for o in world.parts() + world.person_parts()]
             + [_geom_xml(o, ENVIRONMENT_GROUP) for o in world.walls()])
    body = "\n    ".join(geoms)
    return (
        '<mujoco model="sim2real">\n'
        "  <worldbody>\n"
        f'    <geom name="floor" type="plane" group="{ENVIRONMENT_GROUP}" size="{floor_x!r} {floor_y!r} 0.1"/>\n'
        f"    {body}\n"
        "  </worldbody>\n"
        "</mujoco>\n"
    )


@lru_cache(maxsize=64)
def _pixel_slopes(width: int, height: int, hfov_deg: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-column ``-u / fx`` and per-row ``-v / fx`` of the pixel centres, and fx in pixels."""
    fx = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    left = -(np.arange(width) + 0.5 - width / 2.0) / fx
    up = -(np.arange(height) + 0.5 - height / 2.0) / fx
    left.setflags(write=False)
    up.setflags(write=False)
    return left, up, fx


def _corners(o: Obstacle) -> np.ndarray:
    """The 8 corners (8, 3) of a box bounding the obstacle."""
    if o.shape == "cylinder":
        hx = hy = o.size[0]
        c, s = 1.0, 0.0
    else:
        hx, hy = o.size
        c, s = math.cos(o.yaw), math.sin(o.yaw)
    local = np.array([(sx * hx, sy * hy) for sx in (-1, 1) for sy in (-1, 1)])
    xy = np.stack([o.x + c * local[:, 0] - s * local[:, 1], o.y + s * local[:, 0] + c * local[:, 1]], axis=1)
    return np.concatenate([np.c_[xy, np.full(4, o.z0)], np.c_[xy, np.full(4, o.top)]])


_PAIRS = np.array([(i, j) for i in range(8) for j in range(i + 1, 8)])


class MujocoBackend(SimBackend):
    """Render-only backend: builds the World in MuJoCo and raycasts depth images."""

    name = "mujoco"
    can_drive = False

    def __init__(self, scenario: Scenario, exact: bool = False):
        super().__init__(scenario)
        self.exact = exact
        self._model: mujoco.MjModel | None = None
        self._data: mujoco.MjData | None = None
        self._world: World | None = None
        self._corners = np.zeros((0, 8, 3))
        cam = scenario.camera
        count = cam.width * cam.height      # every drawn image fits within the camera's pixels
        self._geomid = np.empty(count, dtype=np.int32)
        self._dist = np.empty(count, dtype=np.float64)

    def load(self, world: World) -> None:
        self._model = mujoco.MjModel.from_xml_string(world_mjcf(world))
        self._data = mujoco.MjData(self._model)
        mujoco.mj_kinematics(self._model, self._data)
        self._world = world
        parts = world.parts() + world.person_parts()
        self._corners = np.stack([_corners(o) for o in parts]) if parts else np.zeros((0, 8, 3))

    def _rays(self, rotation: np.ndarray, width: int, height: int,
              hfov_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World-frame ray components ``(dx, dy, dz)``, each ``(H, W)``; camera-frame forward is 1."""
        left, up, _ = _pixel_slopes(width, height, float(hfov_deg))
        return tuple(np.add.outer(up * rotation[i, 2] + rotation[i, 0], left * rotation[i, 1]) for i in range(3))

    def _cast(self, origin: np.ndarray, vec: np.ndarray, cutoff: float, groups: np.ndarray | None) -> np.ndarray:
        """z-depth of the first hit of each ray (inf where none within ``cutoff``)."""
        n = len(vec)
        if n > len(self._geomid):
            self._geomid, self._dist = np.empty(n, dtype=np.int32), np.empty(n, dtype=np.float64)
        gid, dist = self._geomid[:n], self._dist[:n]
        mujoco.mj_multiRay(self._model, self._data, origin, np.ascontiguousarray(vec).ravel(), groups, 1, -1,
                           gid, dist, None, n, cutoff)
        return np.where((gid >= 0) & (dist <= cutoff), dist, np.inf)

    def _obstacle_pixels(self, origin: np.ndarray, rotation: np.ndarray, fx: float, width: int,
                         height: int) -> np.ndarray:
        """Mask ``(H, W)`` of the pixels inside some obstacle's projected bounding box."""
        mask = np.zeros((height, width), dtype=bool)
        if not len(self._corners):
            return mask
        local = (self._corners - origin) @ rotation                      # (K, 8, 3) camera frame
        ahead = local[..., 0] > NEAR_M
        a, b = local[:, _PAIRS[:, 0]], local[:, _PAIRS[:, 1]]           # (K, 28, 3)
        crossing = (a[..., 0] > NEAR_M) != (b[..., 0] > NEAR_M)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (NEAR_M - a[..., 0]) / (b[..., 0] - a[..., 0])
        clipped = a + np.where(crossing, t, 0.0)[..., None] * (b - a)
        points = np.concatenate([local, clipped], axis=1)                 # (K, 36, 3)
        keep = np.concatenate([ahead, crossing], axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            col = width / 2.0 - 0.5 - points[..., 1] / points[..., 0] * fx
            row = height / 2.0 - 0.5 - points[..., 2] / points[..., 0] * fx
        for k in np.flatnonzero(keep.any(axis=1)):
            c, r = col[k][keep[k]], row[k][keep[k]]
            c0, c1 = max(math.floor(c.min()), 0), min(math.ceil(c.max()) + 1, width)
            r0, r1 = max(math.floor(r.min()), 0), min(math.ceil(r.max()) + 1, height)
            if c0 < c1 and r0 < r1:
                mask[r0:r1, c0:c1] = True
        return mask

    def _environment(self, origin: np.ndarray, dx: np.ndarray, dy: np.ndarray, dz: np.ndarray) -> np.ndarray:
        """z-depth to the floor or an arena wall's inner face, in closed form (inf where neither).

        The camera is inside the arena and below the wall tops: a ray leaves the arena's rectangle
        through the nearest inner face; it hits that wall if it is between floor and top there,
        the floor if it is already below the floor, and nothing if it passes over the wall.
        """
        world = self._world
        hx, hy = world.arena_size[0] / 2, world.arena_size[1] / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            wall = np.subtract(np.copysign(hx, dx), origin[0]) / dx
            np.minimum(wall, np.subtract(np.copysign(hy, dy), origin[1]) / dy, out=wall)
            z_at_wall = wall * dz
            z_at_wall += origin[2]
            wall[z_at_wall > world.wall_height] = np.inf
            below = z_at_wall < 0
            wall[below] = -origin[2] / dz[below]
        return wall

    def render_ideal(self, pose: Pose2D, camera: CameraSample, exact: bool | None = None) -> np.ndarray:
        """Noise-free z-depth in metres, NaN where no surface lies within the render's reach.

        The image is ``camera.size(...)`` pixels (the scenario camera's unless the sample draws another).
        """
        if self._model is None:
            raise RuntimeError("MujocoBackend.render_depth called before load(world)")
        width, height = camera.size(self.scenario.camera)
        origin, rotation = camera_extrinsics(pose, camera, self.scenario.robot.radius_m)
        dx, dy, dz = self._rays(rotation, width, height, camera.hfov_deg)
        cutoff = RENDER_REACH_M
        world = self._world
        inside = (abs(origin[0]) < world.arena_size[0] / 2 and abs(origin[1]) < world.arena_size[1] / 2
                  and 0.0 < origin[2] < world.wall_height)
        if (self.exact if exact is None else exact) or not inside:
            vec = np.stack([dx.ravel(), dy.ravel(), dz.ravel()], axis=1)
            depth = self._cast(origin, vec, cutoff, None).reshape(height, width)
        else:
            depth = self._environment(origin, dx, dy, dz)
            _, _, fx = _pixel_slopes(width, height, float(camera.hfov_deg))
            pixels = np.flatnonzero(self._obstacle_pixels(origin, rotation, fx, width, height))
            if len(pixels):
                flat = depth.reshape(-1)
                vec = np.stack([dx.ravel()[pixels], dy.ravel()[pixels], dz.ravel()[pixels]], axis=1)
                flat[pixels] = np.minimum(flat[pixels], self._cast(origin, vec, cutoff, _OBSTACLES_ONLY))
        depth = np.where(depth <= cutoff, depth, np.nan)
        return depth.astype(np.float32)

    def render_depth(self, pose: Pose2D, camera: CameraSample, rng: np.random.Generator) -> np.ndarray:
        return apply_sensor_model(self.render_ideal(pose, camera), self.scenario.camera, camera, rng)

    def close(self) -> None:
        self._model = None
        self._data = None
        self._world = None
