"""Simulator A: MuJoCo as a depth renderer, raycasting the World with ``mj_multiRay``.

The scene is static geometry only (floor, walls, obstacles); the robot is not modelled, the
camera is placed at the pose it is given. Depth is z-depth: distance along the optical axis.
"""

from __future__ import annotations

import math
from functools import lru_cache

import mujoco
import numpy as np

from sim2real.contracts.camera import camera_rotation, ray_directions
from sim2real.contracts.scenario import Scenario
from sim2real.sim.base import SimBackend
from sim2real.sim.sensors import apply_sensor_model
from sim2real.sim.world import CameraSample, Obstacle, Pose2D, World


def _geom_xml(o: Obstacle) -> str:
    half_h = o.height / 2
    quat = f"{math.cos(o.yaw / 2)!r} 0 0 {math.sin(o.yaw / 2)!r}"
    if o.shape == "cylinder":
        return f'<geom type="cylinder" pos="{o.x!r} {o.y!r} {half_h!r}" size="{o.size[0]!r} {half_h!r}"/>'
    return (f'<geom type="box" pos="{o.x!r} {o.y!r} {half_h!r}" quat="{quat}" '
            f'size="{o.size[0]!r} {o.size[1]!r} {half_h!r}"/>')


def world_mjcf(world: World) -> str:
    """The MJCF document of a World: a floor plane and every solid as a static geom."""
    floor_x = world.arena_size[0] / 2 + 2 * world.wall_thickness
    floor_y = world.arena_size[1] / 2 + 2 * world.wall_thickness
    geoms = "\n    ".join(_geom_xml(o) for o in world.solids())
    return (
        '<mujoco model="sim2real">\n'
        "  <worldbody>\n"
        f'    <geom name="floor" type="plane" size="{floor_x!r} {floor_y!r} 0.1"/>\n'
        f"    {geoms}\n"
        "  </worldbody>\n"
        "</mujoco>\n"
    )


@lru_cache(maxsize=8)
def _camera_rays(width: int, height: int, hfov_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Body-frame unit rays ``(H*W, 3)`` and each ray's cosine to the optical axis ``(H*W,)``."""
    rays = ray_directions(width, height, hfov_deg).reshape(-1, 3)
    rays.setflags(write=False)
    return rays, rays[:, 0].copy()


class MujocoBackend(SimBackend):
    """Render-only backend: builds the World in MuJoCo and raycasts depth images."""

    name = "mujoco"
    can_drive = False

    def __init__(self, scenario: Scenario):
        super().__init__(scenario)
        self._model: mujoco.MjModel | None = None
        self._data: mujoco.MjData | None = None
        cam = scenario.camera
        count = cam.width * cam.height
        self._geomid = np.empty(count, dtype=np.int32)
        self._dist = np.empty(count, dtype=np.float64)

    def load(self, world: World) -> None:
        self._model = mujoco.MjModel.from_xml_string(world_mjcf(world))
        self._data = mujoco.MjData(self._model)
        mujoco.mj_kinematics(self._model, self._data)

    def render_ideal(self, pose: Pose2D, camera: CameraSample) -> np.ndarray:
        """Noise-free z-depth in metres, NaN where no surface lies within the camera's reach."""
        if self._model is None:
            raise RuntimeError("MujocoBackend.render_depth called before load(world)")
        cam = self.scenario.camera
        rays, cos_axis = _camera_rays(cam.width, cam.height, float(camera.hfov_deg))
        rotation = camera_rotation(pose.yaw, math.radians(camera.pitch_deg))
        vec = np.ascontiguousarray((rays @ rotation.T).ravel())
        offset = self.scenario.robot.radius_m
        origin = np.array([pose.x + offset * math.cos(pose.yaw),
                           pose.y + offset * math.sin(pose.yaw),
                           camera.mount_height_m])
        # Far enough that every pixel whose z-depth is within max_range is found, corners included.
        cutoff = max(1.5 * cam.max_range_m, cam.max_range_m / float(cos_axis.min()))
        mujoco.mj_multiRay(self._model, self._data, origin, vec, None, 1, -1,
                           self._geomid, self._dist, None, len(cos_axis), cutoff)
        hit = (self._geomid >= 0) & (self._dist <= cutoff)
        depth = np.where(hit, self._dist * cos_axis, np.nan)
        return depth.reshape(cam.height, cam.width).astype(np.float32)

    def render_depth(self, pose: Pose2D, camera: CameraSample, rng: np.random.Generator) -> np.ndarray:
        return apply_sensor_model(self.render_ideal(pose, camera), self.scenario.camera, camera, rng)

    def close(self) -> None:
        self._model = None
        self._data = None
