"""Failed episodes as rosbag2 (MCAP) bags that Foxglove, RViz and ``sim2real replay`` open.

``eval --failed-bags DIR`` writes each failed episode to ``DIR/episode_NNNNN/`` in the standard
ROS 2 message schemas (rosbags' typestore), stamped with the episode's time from 0:

- ``/camera/depth/image_raw`` (sensor_msgs/Image, 32FC1 metres, NaN where nothing returned) and
  ``/camera/depth/camera_info`` (sensor_msgs/CameraInfo) before it, every control step: the image
  the policy saw, in ``camera_depth_optical_frame``;
- ``/cmd_vel`` (geometry_msgs/Twist): the command the policy sent for that image;
- ``/odom`` (nav_msgs/Odometry, the pose only) and ``/tf`` (tf2_msgs/TFMessage): the true pose, ``odom`` →
  ``base_link``; ``/tf_static``: ``base_link`` → ``camera_link`` → ``camera_depth_optical_frame``;
- ``/obstacles`` (visualization_msgs/MarkerArray, every second): walls and obstacles in ``odom``,
  the collision point and a line saying why the episode failed.

Each bag is written into a temporary folder beside its place and renamed when complete.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path

import numpy as np

from sim2real.contracts.scenario import Scenario
from sim2real.eval.policies import scenario_intrinsics
from sim2real.runtime.replay import CAMERA_INFO_TYPE, IMAGE_TYPE, TWIST_TYPE, _rosbags, camera_info_message
from sim2real.runtime.ros_image import encode_depth
from sim2real.sim.world import Obstacle, Pose2D, World

TOPICS = {"image": "/camera/depth/image_raw", "camera_info": "/camera/depth/camera_info", "cmd_vel": "/cmd_vel",
          "odom": "/odom", "tf": "/tf", "tf_static": "/tf_static", "obstacles": "/obstacles"}
TYPES = {"image": IMAGE_TYPE, "camera_info": CAMERA_INFO_TYPE, "cmd_vel": TWIST_TYPE, "odom": "nav_msgs/msg/Odometry",
         "tf": "tf2_msgs/msg/TFMessage", "tf_static": "tf2_msgs/msg/TFMessage",
         "obstacles": "visualization_msgs/msg/MarkerArray"}
ODOM, BASE, CAMERA, OPTICAL = "odom", "base_link", "camera_link", "camera_depth_optical_frame"
MARKER_PERIOD_S = 1.0


def bag_name(index: int) -> str:
    return f"episode_{index:05d}"


def check_folder(folder: str | Path) -> Path:
    """The folder for failed episodes: new, or an empty folder (no bag is ever overwritten)."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ValueError(f"--failed-bags {folder}: must be a new or empty folder")
    return folder


def _quaternion(roll: float = 0.0, pitch: float = 0.0, yaw: float = 0.0) -> tuple[float, float, float, float]:
    """(x, y, z, w) of roll about x, then pitch about y, then yaw about z (ROS's fixed-axis RPY)."""
    cr, sr = math.cos(roll / 2), math.sin(roll / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    return (sr * cp * cy - cr * sp * sy, cr * sp * cy + sr * cp * sy, cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy)


class _Messages:
    """Builders for the rosbags message classes of one typestore."""

    def __init__(self, store):
        self.store = store
        t = store.types
        self.time, self.header = t["builtin_interfaces/msg/Time"], t["std_msgs/msg/Header"]
        self.vector, self.point = t["geometry_msgs/msg/Vector3"], t["geometry_msgs/msg/Point"]
        self.quat, self.pose = t["geometry_msgs/msg/Quaternion"], t["geometry_msgs/msg/Pose"]
        self.duration = t["builtin_interfaces/msg/Duration"]

    def stamp(self, t: float, frame: str):
        sec, nanosec = divmod(round(t * 1e9), 10**9)
        return self.header(stamp=self.time(sec=sec, nanosec=nanosec), frame_id=frame)

    def quaternion(self, roll: float = 0.0, pitch: float = 0.0, yaw: float = 0.0):
        x, y, z, w = _quaternion(roll, pitch, yaw)
        return self.quat(x=x, y=y, z=z, w=w)

    def transform(self, t: float, parent: str, child: str, xyz, rotation):
        types = self.store.types
        return types["geometry_msgs/msg/TransformStamped"](
            header=self.stamp(t, parent), child_frame_id=child,
            transform=types["geometry_msgs/msg/Transform"](translation=self.vector(x=xyz[0], y=xyz[1], z=xyz[2]),
                                                           rotation=rotation))

    def twist(self, linear: float, angular: float):
        return self.store.types[TWIST_TYPE](linear=self.vector(x=linear, y=0.0, z=0.0),
                                            angular=self.vector(x=0.0, y=0.0, z=angular))

    def odometry(self, t: float, pose: Pose2D):
        types = self.store.types
        where = self.pose(position=self.point(x=pose.x, y=pose.y, z=0.0), orientation=self.quaternion(yaw=pose.yaw))
        return types["nav_msgs/msg/Odometry"](
            header=self.stamp(t, ODOM), child_frame_id=BASE,
            pose=types["geometry_msgs/msg/PoseWithCovariance"](pose=where, covariance=np.zeros(36)),
            twist=types["geometry_msgs/msg/TwistWithCovariance"](twist=self.twist(0.0, 0.0), covariance=np.zeros(36)))

    def marker(self, t: float, ns: str, ident: int, shape: int, xyz, yaw: float, scale, rgba, text: str = ""):
        types = self.store.types
        marker_cls = types["visualization_msgs/msg/Marker"]
        return marker_cls(
            header=self.stamp(t, ODOM), ns=ns, id=ident, type=shape, action=marker_cls.ADD,
            pose=self.pose(position=self.point(x=xyz[0], y=xyz[1], z=xyz[2]), orientation=self.quaternion(yaw=yaw)),
            scale=self.vector(x=scale[0], y=scale[1], z=scale[2]),
            color=types["std_msgs/msg/ColorRGBA"](r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3]),
            lifetime=self.duration(sec=0, nanosec=0), frame_locked=False, points=[], colors=[],
            texture_resource="", texture=types["sensor_msgs/msg/CompressedImage"](
                header=self.stamp(t, ""), format="", data=np.zeros(0, np.uint8)),
            uv_coordinates=[], text=text, mesh_resource="",
            mesh_file=types["visualization_msgs/msg/MeshFile"](filename="", data=np.zeros(0, np.uint8)),
            mesh_use_embedded_materials=False)


def _solid_marker(m: _Messages, t: float, ns: str, ident: int, o: Obstacle, rgba):
    """A cylinder or a box (half-extents ``size``), standing at ``z0`` when the primitive has one."""
    marker_cls = m.store.types["visualization_msgs/msg/Marker"]
    z = getattr(o, "z0", 0.0) + o.height / 2
    if o.shape == "cylinder":
        return m.marker(t, ns, ident, marker_cls.CYLINDER, (o.x, o.y, z), 0.0,
                        (2 * o.size[0], 2 * o.size[0], o.height), rgba)
    return m.marker(t, ns, ident, marker_cls.CUBE, (o.x, o.y, z), o.yaw, (2 * o.size[0], 2 * o.size[1], o.height),
                    rgba)


def failure_reason(record: dict, min_progress_m: float) -> str:
    if record["collided"]:
        return f"collision at step {record['steps'] - 1}"
    turned = record.get("longest_turn_in_place_s", 0.0)
    return (f"progress {record['progress_m']:.2f} m < {min_progress_m:g} m; longest turn in place {turned:.1f} s, "
            f"{record.get('turn_reversals', 0)} turn reversals")


def _markers(m: _Messages, t: float, world: World, record: dict, scenario: Scenario):
    marker_cls = m.store.types["visualization_msgs/msg/Marker"]
    items = [_solid_marker(m, t, "walls", k, w, (0.8, 0.75, 0.7, 1.0)) for k, w in enumerate(world.walls())]
    parts = world.parts() if hasattr(world, "parts") else world.obstacles     # each primitive the backends build
    items += [_solid_marker(m, t, "obstacles", k, o, (0.6, 0.6, 0.65, 1.0)) for k, o in enumerate(parts)]
    if record["collision_point"] is not None:
        x, y = record["collision_point"]
        items.append(m.marker(t, "collision", 0, marker_cls.SPHERE, (x, y, 0.1), 0.0, (0.15, 0.15, 0.15),
                              (1.0, 0.1, 0.1, 1.0)))
    sx, sy = world.arena_size
    items.append(m.marker(t, "reason", 0, marker_cls.TEXT_VIEW_FACING, (0.0, sy / 2 + 0.5, 0.5), 0.0, (0.0, 0.0, 0.3),
                          (1.0, 1.0, 1.0, 1.0), text=f"episode {record['index']}: "
                                                      f"{failure_reason(record, scenario.episode.min_progress_m)}"))
    return m.store.types["visualization_msgs/msg/MarkerArray"](markers=items)


def write_failed_episode(folder: Path, scenario: Scenario, world: World, record: dict, recording: list) -> Path:
    """Write one failed episode (``recording``: ``(t, pose, depth, twist)`` per control step); return its bag."""
    _, writer_cls, plugin, store = _rosbags()
    m = _Messages(store)
    intrinsics = scenario_intrinsics(scenario)
    cam = scenario.camera
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / bag_name(record["index"])
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=folder))
    try:
        bag = work / target.name
        with writer_cls(bag, version=writer_cls.VERSION_LATEST, storage_plugin=plugin.MCAP) as writer:
            conn = {key: writer.add_connection(TOPICS[key], TYPES[key], typestore=store) for key in TOPICS}

            def put(key: str, t: float, msg) -> None:
                writer.write(conn[key], round(t * 1e9), store.serialize_cdr(msg, TYPES[key]))

            tf_cls = store.types["tf2_msgs/msg/TFMessage"]
            put("tf_static", 0.0, tf_cls(transforms=[
                m.transform(0.0, BASE, CAMERA, (scenario.robot.radius_m, 0.0, cam.mount_height_m),
                            m.quaternion(pitch=math.radians(cam.pitch_deg))),
                m.transform(0.0, CAMERA, OPTICAL, (0.0, 0.0, 0.0), m.quaternion(-math.pi / 2, 0.0, -math.pi / 2))]))
            next_markers = 0.0
            for t, pose, depth, twist in recording:
                if t >= next_markers - 1e-9:
                    put("obstacles", t, _markers(m, t, world, record, scenario))
                    next_markers = t + MARKER_PERIOD_S
                put("tf", t, tf_cls(transforms=[m.transform(t, ODOM, BASE, (pose.x, pose.y, 0.0),
                                                            m.quaternion(yaw=pose.yaw))]))
                put("odom", t, m.odometry(t, pose))
                header = m.stamp(t, OPTICAL)
                put("camera_info", t, camera_info_message(store, header, intrinsics))
                raw = encode_depth(depth, "32FC1")
                put("image", t, store.types[IMAGE_TYPE](
                    header=header, height=raw.height, width=raw.width, encoding=raw.encoding,
                    is_bigendian=raw.is_bigendian, step=raw.step, data=np.frombuffer(raw.data, dtype=np.uint8)))
                put("cmd_vel", t, m.twist(twist.linear_x, twist.angular_z))
        bag.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target
