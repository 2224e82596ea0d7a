"""Simulator B: PyBullet. It drives a differential-drive robot and renders depth with TinyRenderer.

This backend is the evaluation's "reality": a different physics engine and a different renderer
from the one the training data came from. The scene is the same ``World`` the MuJoCo backend
builds, so the gap is in the simulator, not in the room.

Geometry conventions match the MuJoCo ray caster: the camera sits at the robot's front edge
(forward offset ``robot.radius_m``) at ``camera.mount_height_m``, pitched down ``pitch_deg``; the
image is z-depth in metres, row 0 at the top, column 0 on the robot's left, NaN where nothing is
within range.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pybullet as p

from sim2real.contracts.actions import Twist
from sim2real.contracts.camera import vfov_deg
from sim2real.contracts.scenario import RENDER_REACH_M, Robot, Scenario
from sim2real.sim.base import SimBackend, StepResult
from sim2real.sim.sensors import apply_sensor_model
from sim2real.sim.world import CameraSample, Obstacle, Pose2D, World, camera_extrinsics

PHYSICS_HZ = 240.0
NEAR_M = 0.05
GROUND_CLEARANCE_M = 0.01     # gap between the floor and the underside of the robot's body
WHEEL_WIDTH_M = 0.03
WHEEL_MASS_KG = 0.2
CASTER_RADIUS_M = 0.025
CASTER_MASS_KG = 0.05
WHEEL_TORQUE_NM = 2.0         # motor torque limit per wheel: ~0.05 s to reach 0.5 m/s
WHEEL_FRICTION = 1.0
CASTER_FRICTION = 0.02
CONTACT_TOLERANCE_M = 1e-3    # a contact point closer than this counts as a collision
MAST_RADIUS_M = 0.02          # the camera mast: a thin cylinder at the front edge up to the robot's top
MAST_MASS_KG = 0.01

_OBSTACLE_RGBA = (0.6, 0.6, 0.65, 1.0)
_WALL_RGBA = (0.8, 0.75, 0.7, 1.0)
_PERSON_RGBA = (0.85, 0.6, 0.3, 1.0)
_FLOOR_RGBA = (0.4, 0.4, 0.4, 1.0)


def _cylinder_inertia(mass: float, radius: float, length: float) -> tuple[float, float, float]:
    """(ixx, iyy, izz) of a solid cylinder along z."""
    side = mass * (3 * radius**2 + length**2) / 12.0
    return side, side, 0.5 * mass * radius**2


def _mast(robot: Robot, top_m: float | None) -> str:
    """The camera mast link: from the body's top to ``top_m``, inside the body's footprint at its front."""
    body_top = GROUND_CLEARANCE_M + robot.height_m
    if top_m is None or top_m <= body_top + 1e-6:
        return ""
    radius, length = min(MAST_RADIUS_M, robot.radius_m / 4), top_m - body_top
    z = body_top + length / 2 - robot.wheel_radius_m
    mi = _cylinder_inertia(MAST_MASS_KG, radius, length)
    geometry = f'<origin xyz="0 0 0"/><geometry><cylinder radius="{radius}" length="{length}"/></geometry>'
    return f"""
  <link name="mast">
    <inertial><origin xyz="0 0 0"/><mass value="{MAST_MASS_KG}"/>
      <inertia ixx="{mi[0]}" ixy="0" ixz="0" iyy="{mi[1]}" iyz="0" izz="{mi[2]}"/></inertial>
    <visual>{geometry}</visual>
    <collision>{geometry}</collision>
  </link>
  <joint name="mast_joint" type="fixed">
    <parent link="base"/><child link="mast"/><origin xyz="{robot.radius_m - radius} 0 {z}"/>
  </joint>"""


def robot_urdf(robot: Robot, top_m: float | None = None) -> str:
    """A differential-drive robot: cylinder body, two driven wheels, two low-friction casters, and a
    camera mast up to ``top_m`` (``Scenario.robot_top_m()``) when that is above the body.

    The base frame sits on the wheel axle (``wheel_radius_m`` above the floor), centred on the
    body's axis; +x is forward, +y left.
    """
    r, h, m = robot.radius_m, robot.height_m, robot.mass_kg
    rw, sep = robot.wheel_radius_m, robot.wheel_separation_m
    body_z = GROUND_CLEARANCE_M + h / 2 - rw              # body centre in the axle frame
    caster_z = CASTER_RADIUS_M - rw                       # caster centre, touching the floor
    caster_x = max(r - CASTER_RADIUS_M - 0.02, 0.0)
    bi = _cylinder_inertia(m, r, h)
    wi = _cylinder_inertia(WHEEL_MASS_KG, rw, WHEEL_WIDTH_M)
    ci = 0.4 * CASTER_MASS_KG * CASTER_RADIUS_M**2

    def wheel(name: str, y: float) -> str:
        return f"""
  <link name="{name}">
    <inertial><origin xyz="0 0 0" rpy="1.5707963 0 0"/><mass value="{WHEEL_MASS_KG}"/>
      <inertia ixx="{wi[0]}" ixy="0" ixz="0" iyy="{wi[1]}" iyz="0" izz="{wi[2]}"/></inertial>
    <visual><origin xyz="0 0 0" rpy="1.5707963 0 0"/>
      <geometry><cylinder radius="{rw}" length="{WHEEL_WIDTH_M}"/></geometry></visual>
    <collision><origin xyz="0 0 0" rpy="1.5707963 0 0"/>
      <geometry><cylinder radius="{rw}" length="{WHEEL_WIDTH_M}"/></geometry></collision>
  </link>
  <joint name="{name}_joint" type="continuous">
    <parent link="base"/><child link="{name}"/>
    <origin xyz="0 {y} 0" rpy="0 0 0"/><axis xyz="0 1 0"/>
  </joint>"""

    def caster(name: str, x: float) -> str:
        return f"""
  <link name="{name}">
    <contact><lateral_friction value="{CASTER_FRICTION}"/><rolling_friction value="0"/>
      <spinning_friction value="0"/></contact>
    <inertial><origin xyz="0 0 0"/><mass value="{CASTER_MASS_KG}"/>
      <inertia ixx="{ci}" ixy="0" ixz="0" iyy="{ci}" iyz="0" izz="{ci}"/></inertial>
    <collision><origin xyz="0 0 0"/><geometry><sphere radius="{CASTER_RADIUS_M}"/></geometry></collision>
  </link>
  <joint name="{name}_joint" type="fixed">
    <parent link="base"/><child link="{name}"/><origin xyz="{x} 0 {caster_z}"/>
  </joint>"""

    return f"""<?xml version="1.0"?>
<robot name="sim2real_diffdrive">
  <link name="base">
    <inertial><origin xyz="0 0 {body_z}"/><mass value="{m}"/>
      <inertia ixx="{bi[0]}" ixy="0" ixz="0" iyy="{bi[1]}" iyz="0" izz="{bi[2]}"/></inertial>
    <visual><origin xyz="0 0 {body_z}"/><geometry><cylinder radius="{r}" length="{h}"/></geometry></visual>
    <collision><origin xyz="0 0 {body_z}"/><geometry><cylinder radius="{r}" length="{h}"/></geometry></collision>
  </link>{wheel("left_wheel", sep / 2)}{wheel("right_wheel", -sep / 2)}{caster("front_caster", caster_x)}{caster("rear_caster", -caster_x)}
  {_mast(robot, top_m)}
</robot>
"""


class PybulletBackend(SimBackend):
    """One private PyBullet client (DIRECT); every call names it, so instances never interfere."""

    name = "pybullet"
    can_drive = True

    def __init__(self, scenario: Scenario):
        super().__init__(scenario)
        self.client = p.connect(p.DIRECT)
        if self.client < 0:
            raise RuntimeError("pybullet: could not start a DIRECT physics client")
        self._tmpdir = Path(tempfile.mkdtemp(prefix="sim2real-pybullet-"))
        self._urdf = self._tmpdir / "robot.urdf"
        self._urdf.write_text(robot_urdf(scenario.robot, scenario.robot_top_m()), encoding="utf-8")
        self.world: World | None = None
        self.robot: int | None = None
        self.ground: int | None = None
        self.solids: list[int] = []
        self.people: list[int] = []
        self._wheels: tuple[int, int] = (-1, -1)
        self._base_z = 0.0
        self._proj_cache: dict[tuple, list[float]] = {}

    # ------------------------------------------------------------------ scene
    def load(self, world: World) -> None:
        c = self.client
        p.resetSimulation(physicsClientId=c)
        p.setGravity(0, 0, -9.81, physicsClientId=c)
        p.setTimeStep(1.0 / PHYSICS_HZ, physicsClientId=c)
        self.world = world
        sx, sy = world.arena_size
        pad = 2 * world.wall_thickness + 1.0
        ground_col = p.createCollisionShape(p.GEOM_PLANE, physicsClientId=c)
        # A thin box as the floor's visual (its top face at z=0), sized to the arena and its walls.
        ground_vis = p.createVisualShape(p.GEOM_BOX, halfExtents=[sx / 2 + pad, sy / 2 + pad, 0.005],
                                         visualFramePosition=[0, 0, -0.005], rgbaColor=_FLOOR_RGBA,
                                         physicsClientId=c)
        self.ground = p.createMultiBody(0, ground_col, ground_vis, [0, 0, 0], physicsClientId=c)
        p.changeDynamics(self.ground, -1, lateralFriction=1.0, physicsClientId=c)
        self.solids = ([self._add_solid(o, _OBSTACLE_RGBA) for o in world.parts()]
                       + [self._add_solid(o, _WALL_RGBA) for o in world.walls()])
        self.people = [self._add_solid(o, _PERSON_RGBA) for o in world.person_parts()]
        self.robot = p.loadURDF(str(self._urdf), [0, 0, self.scenario.robot.wheel_radius_m],
                                physicsClientId=c)
        joints = {p.getJointInfo(self.robot, j, physicsClientId=c)[1].decode(): j
                  for j in range(p.getNumJoints(self.robot, physicsClientId=c))}
        self._wheels = (joints["left_wheel_joint"], joints["right_wheel_joint"])
        # PyBullet's base position is the base's centre of mass, not its URDF frame: remember its
        # height with the wheels on the floor, for reset_robot.
        self._base_z = p.getBasePositionAndOrientation(self.robot, physicsClientId=c)[0][2]
        for wheel in self._wheels:
            p.changeDynamics(self.robot, wheel, lateralFriction=WHEEL_FRICTION, physicsClientId=c)
        self._drive(0.0, 0.0)

    def _add_solid(self, o: Obstacle, rgba) -> int:
        c = self.client
        if o.shape == "cylinder":
            col = p.createCollisionShape(p.GEOM_CYLINDER, radius=o.size[0], height=o.height, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_CYLINDER, radius=o.size[0], length=o.height, rgbaColor=rgba,
                                      physicsClientId=c)
        elif o.shape == "box":
            half = [o.size[0], o.size[1], o.height / 2]
            col = p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=c)
            vis = p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=rgba, physicsClientId=c)
        else:
            raise ValueError(f"pybullet backend: unknown obstacle shape '{o.shape}'")
        orn = p.getQuaternionFromEuler([0, 0, o.yaw])
        return p.createMultiBody(0, col, vis, [o.x, o.y, o.z0 + o.height / 2], orn, physicsClientId=c)

    def move_people(self, world: World) -> None:
        """Teleport each person's (static) body to where ``sim.people`` moved it; touching one is a contact."""
        for body, part in zip(self.people, world.person_parts()):
            p.resetBasePositionAndOrientation(body, [part.x, part.y, part.height / 2], [0, 0, 0, 1],
                                              physicsClientId=self.client)

    # ------------------------------------------------------------------ robot
    def _need_robot(self) -> int:
        if self.robot is None:
            raise RuntimeError("pybullet backend: call load(world) before driving the robot")
        return self.robot

    def reset_robot(self, pose: Pose2D) -> None:
        robot, c = self._need_robot(), self.client
        orn = p.getQuaternionFromEuler([0, 0, pose.yaw])
        p.resetBasePositionAndOrientation(robot, [pose.x, pose.y, self._base_z], orn, physicsClientId=c)
        p.resetBaseVelocity(robot, [0, 0, 0], [0, 0, 0], physicsClientId=c)
        for wheel in self._wheels:
            p.resetJointState(robot, wheel, 0.0, 0.0, physicsClientId=c)
        self._drive(0.0, 0.0)
        # Let the robot settle on its wheels and casters without moving.
        for _ in range(int(0.1 * PHYSICS_HZ)):
            p.stepSimulation(physicsClientId=c)

    def _drive(self, left_radps: float, right_radps: float) -> None:
        p.setJointMotorControlArray(self.robot, list(self._wheels), p.VELOCITY_CONTROL,
                                    targetVelocities=[left_radps, right_radps],
                                    forces=[WHEEL_TORQUE_NM, WHEEL_TORQUE_NM], physicsClientId=self.client)

    def wheel_speeds(self, command: Twist) -> tuple[float, float]:
        """Differential-drive inverse kinematics: (left, right) wheel rad/s for a twist."""
        half = self.scenario.robot.wheel_separation_m / 2
        rw = self.scenario.robot.wheel_radius_m
        return ((command.linear_x - command.angular_z * half) / rw,
                (command.linear_x + command.angular_z * half) / rw)

    def step(self, command: Twist, dt: float) -> StepResult:
        self._need_robot()
        c = self.client
        self._drive(*self.wheel_speeds(command))
        collided = False
        for _ in range(max(1, int(round(dt * PHYSICS_HZ)))):
            p.stepSimulation(physicsClientId=c)
            if not collided and self.contact_point() is not None:
                collided = True
        return StepResult(self.robot_pose(), collided)

    def contact_point(self) -> tuple[float, float] | None:
        """Where the robot touches an obstacle or wall (x, y on the obstacle), or None."""
        for contact in p.getContactPoints(bodyA=self._need_robot(), physicsClientId=self.client):
            if contact[2] != self.ground and contact[8] < CONTACT_TOLERANCE_M:
                return float(contact[6][0]), float(contact[6][1])
        return None

    def robot_pose(self) -> Pose2D:
        pos, orn = p.getBasePositionAndOrientation(self._need_robot(), physicsClientId=self.client)
        return Pose2D(float(pos[0]), float(pos[1]), float(p.getEulerFromQuaternion(orn)[2]))

    # ------------------------------------------------------------------ camera
    def _projection(self, width: int, height: int, hfov: float, far: float) -> list[float]:
        key = (width, height, hfov, far)
        if key not in self._proj_cache:
            proj = list(p.computeProjectionMatrixFOV(
                fov=vfov_deg(width, height, hfov), aspect=width / height, nearVal=NEAR_M, farVal=far,
                physicsClientId=self.client))
            # TinyRenderer samples each pixel at its corner, not its centre: shift the image half a
            # pixel in x and y (NDC spans 2 over the image, so half a pixel is 1/size) so pixel (r, c)
            # sees along the contract's ray through its centre, as the MuJoCo ray caster does.
            proj[8] += 1.0 / width
            proj[9] += 1.0 / height
            self._proj_cache[key] = proj
        return self._proj_cache[key]

    def render_ideal(self, pose: Pose2D, camera: CameraSample) -> np.ndarray:
        """Noise-free z-depth in metres (NaN where nothing was hit within the render's reach)."""
        width, height = camera.size(self.scenario.camera)
        far = RENDER_REACH_M
        # At the front edge, like the MuJoCo ray caster: the body lies behind the near plane, never in
        # view. camera_extrinsics also applies any mounting jitter (roll, yaw offset, lateral offset).
        eye, rot = camera_extrinsics(pose, camera, self.scenario.robot.radius_m)
        forward, up = rot[:, 0], rot[:, 2]
        view = p.computeViewMatrix(eye.tolist(), (eye + forward).tolist(), up.tolist(), physicsClientId=self.client)
        proj = self._projection(width, height, camera.hfov_deg, far)
        _, _, _, zbuf, _ = p.getCameraImage(width, height, view, proj, renderer=p.ER_TINY_RENDERER,
                                            flags=p.ER_NO_SEGMENTATION_MASK, physicsClientId=self.client)
        zbuf = np.asarray(zbuf, dtype=np.float64).reshape(height, width)
        depth = far * NEAR_M / (far - (far - NEAR_M) * zbuf)
        depth[(zbuf >= 1.0 - 1e-7) | (depth >= far * 0.999)] = np.nan
        return depth.astype(np.float32)

    def render_depth(self, pose: Pose2D, camera: CameraSample, rng: np.random.Generator) -> np.ndarray:
        if self.world is None:
            raise RuntimeError("pybullet backend: call load(world) before rendering")
        return apply_sensor_model(self.render_ideal(pose, camera), self.scenario.camera, camera, rng)

    def close(self) -> None:
        if self.client is not None and self.client >= 0:
            try:
                p.disconnect(physicsClientId=self.client)
            except p.error:
                pass
            self.client = -1
        shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __del__(self):  # best effort: a forgotten backend must not leak its client
        try:
            self.close()
        except Exception:
            pass
