"""Real rosbag2 recordings for tests (MCAP and sqlite3), written with the rosbags writer.

A recording is a list of :class:`Message` (topic, type, log time, rosbags message), written in
the order given (so a test can write header stamps out of order). :func:`drive` scripts a
driver: stretches of a scene (``helpers_models.depth_scene``) with the command the driver gives
for it, published continuously at ``cmd_rate_hz`` and changed ``lag_s`` after the scene changes,
as a person with a joystick reacts. Its frames list says, per image, the scene and the
driver's command, so a test knows the labels and the tiny model's answers in advance
(``helpers_models.EXPECTED_ACTION``).

    messages, frames = drive([Segment("open", "forward", 20), Segment("obstacle_left", "right", 10)])
    write_bag(tmp_path / "run", messages, storage="sqlite3")
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from helpers_models import depth_scene
from sim2real.contracts.camera import Intrinsics
from sim2real.runtime.replay import camera_info_message
from sim2real.runtime.ros_image import RawImage, encode_depth

IMAGE_TOPIC = "/camera/depth/image_raw"
INFO_TOPIC = "/camera/depth/camera_info"
CMD_TOPIC = "/cmd_vel"
IMAGE = "sensor_msgs/msg/Image"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
TWIST = "geometry_msgs/msg/Twist"
TWIST_STAMPED = "geometry_msgs/msg/TwistStamped"
START_NS = 1_700_000_000 * 10**9
# What the scripted driver sends for each decision: (linear.x m/s, angular.z rad/s); left is +z.
DRIVER_TWIST = {"forward": (0.4, 0.0), "left": (0.1, 0.8), "right": (0.1, -0.8), "stop": (0.0, 0.0)}


def store():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.LATEST)


@dataclass(frozen=True)
class Message:
    topic: str
    msgtype: str
    t_ns: int          # the recorder's log (receive) time
    msg: object


def header(t_ns: int, frame_id: str = "camera_depth_optical_frame"):
    s = store()
    return s.types["std_msgs/msg/Header"](
        stamp=s.types["builtin_interfaces/msg/Time"](sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id=frame_id)


def image_msg(stamp_ns: int, depth_m: np.ndarray | RawImage, encoding: str = "16UC1"):
    """A sensor_msgs/Image stamped ``stamp_ns`` holding ``depth_m`` (metres) in ``encoding``."""
    raw = depth_m if isinstance(depth_m, RawImage) else encode_depth(depth_m, encoding)
    return store().types[IMAGE](header=header(stamp_ns), height=raw.height, width=raw.width,
                                encoding=raw.encoding, is_bigendian=raw.is_bigendian, step=raw.step,
                                data=np.frombuffer(raw.data, dtype=np.uint8))


def camera_info_msg(stamp_ns: int, intrinsics: Intrinsics):
    return camera_info_message(store(), header(stamp_ns), intrinsics)


def twist_msg(linear_x: float, angular_z: float, stamp_ns: int | None = None):
    """A geometry_msgs/Twist, or a TwistStamped when ``stamp_ns`` is given."""
    s = store()
    vector = s.types["geometry_msgs/msg/Vector3"]
    twist = s.types[TWIST](linear=vector(x=float(linear_x), y=0.0, z=0.0), angular=vector(x=0.0, y=0.0,
                                                                                           z=float(angular_z)))
    if stamp_ns is None:
        return twist
    return s.types[TWIST_STAMPED](header=header(stamp_ns, "base_link"), twist=twist)


def write_bag(path: Path, messages: list[Message], storage: str = "mcap", compression: str | None = None) -> Path:
    """Write ``messages`` (in the order given) to a new rosbag2 folder ``path``; return ``path``.

    ``compression``: ``"file"`` or ``"message"`` (zstd, as ``ros2 bag record --compression-mode``).
    """
    from rosbags.rosbag2 import (
        CompressionFormat,
        CompressionMode,
        StoragePlugin,
        Writer,
    )

    s = store()
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    writer = Writer(Path(path), version=Writer.VERSION_LATEST, storage_plugin=plugin)
    if compression:
        writer.set_compression(CompressionMode[compression.upper()], CompressionFormat.ZSTD)
    with writer:
        connections = {}
        for m in messages:
            key = (m.topic, m.msgtype)
            if key not in connections:
                connections[key] = writer.add_connection(m.topic, m.msgtype, typestore=s)
            writer.write(connections[key], m.t_ns, s.serialize_cdr(m.msg, m.msgtype))
    return Path(path)


@dataclass(frozen=True)
class Segment:
    """``frames`` images of ``scene`` while the driver commands ``command`` (forward, left, right, stop)."""

    scene: str
    command: str
    frames: int


@dataclass(frozen=True)
class Frame:
    stamp_ns: int
    scene: str
    command: str


def drive(segments: list[Segment], *, rate_hz: float = 10.0, cmd_rate_hz: float = 20.0, lag_s: float = 0.3,
          start_ns: int = START_NS, size: tuple[int, int] = (64, 48), hfov_deg: float = 87.0,
          encoding: str = "16UC1", camera_info: bool = True, cmd_type: str = TWIST, cmd: bool = True,
          image_topic: str = IMAGE_TOPIC, info_topic: str = INFO_TOPIC, cmd_topic: str = CMD_TOPIC,
          transport_ns: int = 2_000_000) -> tuple[list[Message], list[Frame]]:
    """A scripted drive: images at ``rate_hz`` (each with its CameraInfo), the driver's commands at
    ``cmd_rate_hz``, each decision taking effect ``lag_s`` after the image that calls for it.

    Images are logged ``transport_ns`` after their header stamp; commands from before the first
    image on are the first segment's. Returns the messages in log-time order and the frames.
    """
    width, height = size
    intrinsics = Intrinsics.from_fov(width, height, hfov_deg)
    frames, messages = [], []
    period = round(1e9 / rate_hz)
    for segment in segments:
        for _ in range(segment.frames):
            frames.append(Frame(start_ns + len(frames) * period, segment.scene, segment.command))
    for frame in frames:
        t = frame.stamp_ns + transport_ns
        if camera_info:
            messages.append(Message(info_topic, CAMERA_INFO, t, camera_info_msg(frame.stamp_ns, intrinsics)))
        depth = depth_scene(frame.scene, height, width)
        messages.append(Message(image_topic, IMAGE, t, image_msg(frame.stamp_ns, depth, encoding)))
    if cmd and frames:
        lag = round(lag_s * 1e9)
        changes = [(f.stamp_ns + lag, f.command) for f in frames]
        step = round(1e9 / cmd_rate_hz)
        end = frames[-1].stamp_ns + lag + period
        t, k, command = start_ns - step, 0, frames[0].command
        while t <= end:
            while k < len(changes) and changes[k][0] <= t:
                command = changes[k][1]
                k += 1
            linear, angular = DRIVER_TWIST[command]
            msg = twist_msg(linear, angular, t if cmd_type == TWIST_STAMPED else None)
            messages.append(Message(cmd_topic, cmd_type, t, msg))
            t += step
    messages.sort(key=lambda m: m.t_ns)
    return messages, frames


def write_drive(path: Path, segments: list[Segment], storage: str = "mcap", compression: str | None = None,
                **options) -> tuple[Path, list[Frame]]:
    """:func:`drive` written to ``path``; returns the bag and its frames."""
    messages, frames = drive(segments, **options)
    return write_bag(path, messages, storage, compression), frames
