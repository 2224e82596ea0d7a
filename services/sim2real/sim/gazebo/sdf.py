"""An SDF world for Gazebo (gz sim) built from a scenario and a sampled ``World``.

The same ``World`` the MuJoCo and PyBullet backends build becomes static models here (walls and
obstacles); the robot is the PyBullet robot's geometry (cylinder body, two driven wheels, two
low-friction casters) driven by ``gz-sim-diff-drive-system``, with a depth camera matching the
scenario's camera (size, field of view, mount height, pitch, range), a contact sensor on the body
(collisions) and a ground-truth pose publisher. Sensor noise is not put in the SDF: like every
backend, the Gazebo backend applies the scenario's sensor model to the ideal depth image.

Pure Python (xml.etree): generating and checking the world needs no Gazebo.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

from sim2real.contracts.scenario import RENDER_REACH_M, Scenario
from sim2real.sim import kinds
from sim2real.sim.world import Obstacle, Pose2D, World

SDF_VERSION = "1.9"
WORLD_NAME = "sim2real"
ROBOT_NAME = "robot"
PHYSICS_STEP_S = 0.004
GROUND_CLEARANCE_M = 0.01
WHEEL_WIDTH_M = 0.03
WHEEL_MASS_KG = 0.2
CASTER_RADIUS_M = 0.025
CASTER_MASS_KG = 0.05
WHEEL_FRICTION = 1.0
CASTER_FRICTION = 0.02
CAMERA_NEAR_M = 0.05
MAST_RADIUS_M = 0.02
MAST_MASS_KG = 0.01

# Gazebo-side topics; bridge.py maps them to ROS 2 names.
GZ_TOPICS = {
    "depth": "/camera/depth/image_raw",
    "cmd_vel": f"/model/{ROBOT_NAME}/cmd_vel",
    "odometry": f"/model/{ROBOT_NAME}/odometry",
    "ground_truth": f"/model/{ROBOT_NAME}/ground_truth",
    "contacts": f"/model/{ROBOT_NAME}/bumper",
    "clock": "/clock",
}

_OBSTACLE_RGBA = "0.6 0.6 0.65 1"
_WALL_RGBA = "0.8 0.75 0.7 1"
_PERSON_RGBA = "0.85 0.6 0.3 1"
_FLOOR_RGBA = "0.4 0.4 0.4 1"


def _f(value: float) -> str:
    return f"{value:.6g}"


def _pose(x: float = 0, y: float = 0, z: float = 0, roll: float = 0, pitch: float = 0, yaw: float = 0) -> str:
    return " ".join(_f(v) for v in (x, y, z, roll, pitch, yaw))


def _sub(parent: ET.Element, tag: str, text: str | float | None = None, **attrs: str) -> ET.Element:
    node = ET.SubElement(parent, tag, attrs)
    if text is not None:
        node.text = text if isinstance(text, str) else _f(text)
    return node


def _inertial(link: ET.Element, mass: float, ixx: float, iyy: float, izz: float, pose: str | None = None) -> None:
    inertial = _sub(link, "inertial")
    if pose:
        _sub(inertial, "pose", pose)
    _sub(inertial, "mass", mass)
    inertia = _sub(inertial, "inertia")
    for name, value in (("ixx", ixx), ("iyy", iyy), ("izz", izz), ("ixy", 0.0), ("ixz", 0.0), ("iyz", 0.0)):
        _sub(inertia, name, value)


def _geometry(parent: ET.Element, shape: str, size: tuple[float, ...]) -> None:
    geometry = _sub(parent, "geometry")
    if shape == "box":
        _sub(_sub(geometry, "box"), "size", " ".join(_f(s) for s in size))
    elif shape == "cylinder":
        cylinder = _sub(geometry, "cylinder")
        _sub(cylinder, "radius", size[0])
        _sub(cylinder, "length", size[1])
    elif shape == "sphere":
        _sub(_sub(geometry, "sphere"), "radius", size[0])
    else:
        raise ValueError(f"gazebo sdf: unknown shape '{shape}'")


def _friction(collision: ET.Element, mu: float) -> None:
    ode = _sub(_sub(_sub(collision, "surface"), "friction"), "ode")
    _sub(ode, "mu", mu)
    _sub(ode, "mu2", mu)


def _material(visual: ET.Element, rgba: str) -> None:
    material = _sub(visual, "material")
    _sub(material, "ambient", rgba)
    _sub(material, "diffuse", rgba)


def _solid_link(model: ET.Element, name: str, o: Obstacle, rgba: str, pose: str | None = None) -> None:
    link = _sub(model, "link", name=name)
    if pose:
        _sub(link, "pose", pose)
    if o.shape == "box":
        shape, size = "box", (2 * o.size[0], 2 * o.size[1], o.height)
    elif o.shape == "cylinder":
        shape, size = "cylinder", (o.size[0], o.height)
    else:
        raise ValueError(f"gazebo sdf: unknown obstacle shape '{o.shape}'")
    _geometry(_sub(link, "collision", name="collision"), shape, size)
    visual = _sub(link, "visual", name="visual")
    _geometry(visual, shape, size)
    _material(visual, rgba)


def solid_model(name: str, o: Obstacle, rgba: str = _OBSTACLE_RGBA) -> ET.Element:
    """A static obstacle: one link per part of its kind (``link`` alone for a one-part obstacle,
    whose model pose is the part's; ``part_<j>`` links posed in the model frame otherwise)."""
    model = ET.Element("model", name=name)
    _sub(model, "static", "true")
    parts = kinds.parts(o)
    if len(parts) == 1:
        part = parts[0]
        _sub(model, "pose", _pose(part.x, part.y, part.z0 + part.height / 2, yaw=part.yaw))
        _solid_link(model, "link", part, rgba)
        return model
    _sub(model, "pose", _pose(o.x, o.y, 0.0, yaw=o.yaw))
    c, s = math.cos(-o.yaw), math.sin(-o.yaw)
    for j, part in enumerate(parts):
        dx, dy = part.x - o.x, part.y - o.y
        local = _pose(c * dx - s * dy, s * dx + c * dy, part.z0 + part.height / 2, yaw=part.yaw - o.yaw)
        _solid_link(model, f"part_{j}", part, rgba, local)
    return model


def robot_model(scenario: Scenario, start: Pose2D | None = None) -> ET.Element:
    """The differential-drive robot; its model frame is on the floor under the body's axis, +x forward."""
    robot, camera = scenario.robot, scenario.camera
    r, h, m = robot.radius_m, robot.height_m, robot.mass_kg
    rw, sep = robot.wheel_radius_m, robot.wheel_separation_m
    start = start or Pose2D(0.0, 0.0, 0.0)
    body_z = GROUND_CLEARANCE_M + h / 2
    caster_x = max(r - CASTER_RADIUS_M - 0.02, 0.0)

    model = ET.Element("model", name=ROBOT_NAME)
    _sub(model, "pose", _pose(start.x, start.y, 0.0, yaw=start.yaw))

    chassis = _sub(model, "link", name="chassis")
    _sub(chassis, "pose", _pose(z=body_z))
    side = m * (3 * r**2 + h**2) / 12.0
    _inertial(chassis, m, side, side, 0.5 * m * r**2)
    _geometry(_sub(chassis, "collision", name="chassis_collision"), "cylinder", (r, h))
    visual = _sub(chassis, "visual", name="chassis_visual")
    _geometry(visual, "cylinder", (r, h))
    _material(visual, "0.2 0.4 0.8 1")

    sensor = _sub(chassis, "sensor", name="depth_camera", type="depth_camera")
    _sub(sensor, "pose", _pose(x=r, z=camera.mount_height_m - body_z, pitch=math.radians(camera.pitch_deg)))
    _sub(sensor, "always_on", "true")
    _sub(sensor, "update_rate", scenario.episode.control_hz)
    _sub(sensor, "topic", GZ_TOPICS["depth"])
    cam = _sub(sensor, "camera", name="depth")
    _sub(cam, "horizontal_fov", math.radians(camera.hfov_deg))
    image = _sub(cam, "image")
    _sub(image, "width", str(camera.width))
    _sub(image, "height", str(camera.height))
    _sub(image, "format", "R_FLOAT32")
    clip = _sub(cam, "clip")
    _sub(clip, "near", min(CAMERA_NEAR_M, camera.min_range_m))
    _sub(clip, "far", RENDER_REACH_M)     # beyond max_range_m a reading is "too far", still published

    bumper = _sub(chassis, "sensor", name="bumper", type="contact")
    _sub(bumper, "always_on", "true")
    _sub(bumper, "update_rate", 1.0 / PHYSICS_STEP_S)
    contact = _sub(bumper, "contact")
    _sub(contact, "collision", "chassis_collision")
    _sub(contact, "topic", GZ_TOPICS["contacts"])

    body_top = GROUND_CLEARANCE_M + h
    top = scenario.robot_top_m()
    if top > body_top + 1e-6:          # the camera mast, as in the PyBullet robot, with its own bumper
        radius, length = min(MAST_RADIUS_M, r / 4), top - body_top
        mast = _sub(model, "link", name="mast")
        _sub(mast, "pose", _pose(x=r - radius, z=body_top + length / 2))
        side_m = MAST_MASS_KG * (3 * radius**2 + length**2) / 12.0
        _inertial(mast, MAST_MASS_KG, side_m, side_m, 0.5 * MAST_MASS_KG * radius**2)
        _geometry(_sub(mast, "collision", name="mast_collision"), "cylinder", (radius, length))
        _geometry(_sub(mast, "visual", name="mast_visual"), "cylinder", (radius, length))
        joint = _sub(model, "joint", name="mast_joint", type="fixed")
        _sub(joint, "parent", "chassis")
        _sub(joint, "child", "mast")
        bumper = _sub(mast, "sensor", name="mast_bumper", type="contact")
        _sub(bumper, "always_on", "true")
        _sub(bumper, "update_rate", 1.0 / PHYSICS_STEP_S)
        contact = _sub(bumper, "contact")
        _sub(contact, "collision", "mast_collision")
        _sub(contact, "topic", GZ_TOPICS["contacts"])

    wi_side = WHEEL_MASS_KG * (3 * rw**2 + WHEEL_WIDTH_M**2) / 12.0
    for name, y in (("left_wheel", sep / 2), ("right_wheel", -sep / 2)):
        wheel = _sub(model, "link", name=name)
        _sub(wheel, "pose", _pose(y=y, z=rw, roll=-math.pi / 2))   # cylinder axis along the robot's y
        _inertial(wheel, WHEEL_MASS_KG, wi_side, wi_side, 0.5 * WHEEL_MASS_KG * rw**2)
        collision = _sub(wheel, "collision", name=f"{name}_collision")
        _geometry(collision, "cylinder", (rw, WHEEL_WIDTH_M))
        _friction(collision, WHEEL_FRICTION)
        _geometry(_sub(wheel, "visual", name=f"{name}_visual"), "cylinder", (rw, WHEEL_WIDTH_M))
        joint = _sub(model, "joint", name=f"{name}_joint", type="revolute")
        _sub(joint, "parent", "chassis")
        _sub(joint, "child", name)
        axis = _sub(joint, "axis")
        _sub(axis, "xyz", "0 0 1")
        limit = _sub(axis, "limit")
        _sub(limit, "lower", "-1e16")
        _sub(limit, "upper", "1e16")

    ci = 0.4 * CASTER_MASS_KG * CASTER_RADIUS_M**2
    for name, x in (("front_caster", caster_x), ("rear_caster", -caster_x)):
        caster = _sub(model, "link", name=name)
        _sub(caster, "pose", _pose(x=x, z=CASTER_RADIUS_M))
        _inertial(caster, CASTER_MASS_KG, ci, ci, ci)
        collision = _sub(caster, "collision", name=f"{name}_collision")
        _geometry(collision, "sphere", (CASTER_RADIUS_M,))
        _friction(collision, CASTER_FRICTION)
        joint = _sub(model, "joint", name=f"{name}_joint", type="ball")
        _sub(joint, "parent", "chassis")
        _sub(joint, "child", name)

    drive = _sub(model, "plugin", filename="gz-sim-diff-drive-system", name="gz::sim::systems::DiffDrive")
    _sub(drive, "left_joint", "left_wheel_joint")
    _sub(drive, "right_joint", "right_wheel_joint")
    _sub(drive, "wheel_separation", sep)
    _sub(drive, "wheel_radius", rw)
    _sub(drive, "topic", GZ_TOPICS["cmd_vel"])
    _sub(drive, "odom_topic", GZ_TOPICS["odometry"])
    _sub(drive, "odom_publish_frequency", scenario.episode.control_hz)
    _sub(drive, "frame_id", "odom")
    _sub(drive, "child_frame_id", f"{ROBOT_NAME}/base_link")

    truth = _sub(model, "plugin", filename="gz-sim-odometry-publisher-system",
                 name="gz::sim::systems::OdometryPublisher")
    _sub(truth, "odom_frame", "world")
    _sub(truth, "robot_base_frame", ROBOT_NAME)
    _sub(truth, "odom_topic", GZ_TOPICS["ground_truth"])
    _sub(truth, "dimensions", "2")
    _sub(truth, "odom_publish_frequency", scenario.episode.control_hz)
    return model


def world_element(scenario: Scenario, world: World, start: Pose2D | None = None,
                  name: str = WORLD_NAME) -> ET.Element:
    """The ``<sdf>`` root: physics, the systems the episode loop needs, floor, walls, obstacles, robot."""
    sdf = ET.Element("sdf", version=SDF_VERSION)
    w = _sub(sdf, "world", name=name)
    physics = _sub(w, "physics", name="lockstep", type="ignored")
    _sub(physics, "max_step_size", PHYSICS_STEP_S)
    _sub(physics, "real_time_factor", "0")          # as fast as possible; the loop steps it
    _sub(w, "gravity", "0 0 -9.81")
    for filename, cls in (("gz-sim-physics-system", "Physics"), ("gz-sim-user-commands-system", "UserCommands"),
                          ("gz-sim-scene-broadcaster-system", "SceneBroadcaster"),
                          ("gz-sim-contact-system", "Contact")):
        _sub(w, "plugin", filename=filename, name=f"gz::sim::systems::{cls}")
    sensors = _sub(w, "plugin", filename="gz-sim-sensors-system", name="gz::sim::systems::Sensors")
    _sub(sensors, "render_engine", "ogre2")

    sx, sy = world.arena_size
    pad = 2 * world.wall_thickness + 1.0
    ground = _sub(w, "model", name="ground_plane")
    _sub(ground, "static", "true")
    link = _sub(ground, "link", name="link")
    collision = _sub(link, "collision", name="collision")
    plane = _sub(_sub(collision, "geometry"), "plane")
    _sub(plane, "normal", "0 0 1")
    _sub(plane, "size", f"{_f(sx + 2 * pad)} {_f(sy + 2 * pad)}")
    _friction(collision, 1.0)
    visual = _sub(link, "visual", name="visual")
    plane = _sub(_sub(visual, "geometry"), "plane")
    _sub(plane, "normal", "0 0 1")
    _sub(plane, "size", f"{_f(sx + 2 * pad)} {_f(sy + 2 * pad)}")
    _material(visual, _FLOOR_RGBA)

    for k, wall in enumerate(world.walls()):
        w.append(solid_model(f"wall_{k}", wall, _WALL_RGBA))
    for k, obstacle in enumerate(world.obstacles):
        w.append(solid_model(f"obstacle_{k}", obstacle))
    for k, person in enumerate(world.person_parts()):     # where they stand; the backend cannot move them
        w.append(solid_model(f"person_{k}", person, _PERSON_RGBA))
    w.append(robot_model(scenario, start))
    return sdf


def world_sdf(scenario: Scenario, world: World, start: Pose2D | None = None, name: str = WORLD_NAME) -> str:
    """The world as SDF text (``gz sim <file>`` loads it)."""
    root = world_element(scenario, world, start, name)
    ET.indent(root)
    return '<?xml version="1.0"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
