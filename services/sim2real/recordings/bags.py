"""A recording (rosbag2 folder, or one ``.mcap`` / ``.db3`` file) opened for validate and ingest.

The driver's commands and the CameraInfo messages are read up front (they are small); the depth
images are streamed in the bag's order. Whatever makes the recording unusable is a
:class:`BagError` with one line that names the bag: no such topic, a wrong message type,
header stamps that go back in time, no CameraInfo where the images need one.

Commands are ``geometry_msgs/Twist`` (timed by when the recorder received them) or
``TwistStamped`` (timed by their header). Images are timed by their header stamp (the capture
time; ``image_time="log"``: when the recorder received them). Both clocks must be the one the
recorder used, as on a robot whose camera driver stamps with the system clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim2real.contracts.manifest import sha256_file
from sim2real.recordings.labels import CommandTrack, Labelling
from sim2real.runtime.replay import CAMERA_INFO_TYPE, IMAGE_TYPE, open_bag

TWIST_TYPES = ("geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped")
IMAGE_TIMES = ("header", "log")


class BagError(ValueError):
    """A recording that cannot be used as asked; the message is one line naming it."""


@dataclass(frozen=True)
class Topics:
    image: str = "/camera/depth/image_raw"
    camera_info: str = "/camera/depth/camera_info"
    cmd: str = "/cmd_vel"


@dataclass(frozen=True)
class ImageMessage:
    index: int
    log_ns: int
    t_ns: int           # the image's time (header stamp, or log time)
    msg: object
    camera_info: object | None   # the latest CameraInfo received before it (else the bag's first)


def bag_sha256(path: Path) -> str:
    """sha256 of a bag file, or of a bag folder (each file's name and sha256, in name order)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()} {sha256_file(file)}\n".encode())
    return digest.hexdigest()


def _stamp_ns(msg) -> int:
    return int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)


class Recording:
    """One bag: ``commands`` (a :class:`CommandTrack`, when a labelling is given), ``images()``."""

    def __init__(self, path: str | Path, topics: Topics, labelling: Labelling | None, *,
                 need_camera_info: bool = True, image_time: str = "header"):
        self.path = Path(path)
        self.name = self.path.name
        self.topics = topics
        self.image_time = image_time
        self._context = open_bag(self.path)
        self.reader = self._context.__enter__()
        try:
            self._setup(labelling, need_camera_info)
        except BaseException:
            self.close()
            raise

    def _connections(self, topic: str, types: tuple[str, ...], what: str, required: bool = True) -> list:
        found = [c for c in self.reader.connections if c.topic == topic]
        if not found:
            if not required:
                return []
            present = sorted({c.topic for c in self.reader.connections if c.msgtype in types})
            raise BagError(f"{self.path} has no {what} topic '{topic}' ({' or '.join(t.split('/')[-1] for t in types)} "
                           f"topics in the bag: {', '.join(present) or 'none'})")
        wrong = sorted({c.msgtype for c in found if c.msgtype not in types})
        if wrong:
            raise BagError(f"{what} topic '{topic}' in {self.path} holds {', '.join(wrong)}, not "
                           f"{' or '.join(types)}")
        return found

    def _setup(self, labelling: Labelling | None, need_camera_info: bool) -> None:
        self._images = self._connections(self.topics.image, (IMAGE_TYPE,), "depth image")
        self.n_images = sum(c.msgcount for c in self._images)
        self.start_ns = int(self.reader.start_time)
        self.end_ns = int(self.reader.end_time)
        self.camera_infos = []
        if self.topics.camera_info:
            info_connections = self._connections(self.topics.camera_info, (CAMERA_INFO_TYPE,), "CameraInfo",
                                                 required=False)
            self.camera_infos = [(t, self.reader.deserialize(raw, c.msgtype))   # (no connections: every message)
                                 for c, t, raw in self.reader.messages(connections=info_connections)
                                 ] if info_connections else []
        if need_camera_info and not self.camera_infos:
            raise BagError(f"{self.path} holds no CameraInfo on '{self.topics.camera_info}': the images cannot be "
                           f"mapped onto the model's field of view (give --intrinsics W,H,FX,FY,CX,CY, or "
                           f"--camera-info-topic)")
        self.commands = None
        if labelling is not None:
            connections = self._connections(self.topics.cmd, TWIST_TYPES, "command")
            times, linear, angular = [], [], []
            for c, t, raw in self.reader.messages(connections=connections):
                msg = self.reader.deserialize(raw, c.msgtype)
                if c.msgtype.endswith("TwistStamped"):
                    t, msg = _stamp_ns(msg), msg.twist
                if times and t < times[-1]:
                    raise BagError(f"{self.path}: command stamps on '{self.topics.cmd}' go back in time at message "
                                   f"{len(times)} ({t} ns after {times[-1]} ns)")
                times.append(t)
                linear.append(float(msg.linear.x))
                angular.append(float(msg.angular.z))
            if not times:
                raise BagError(f"{self.path} holds no message on the command topic '{self.topics.cmd}'")
            values = np.array([linear, angular])
            if not np.all(np.isfinite(values)):
                raise BagError(f"{self.path}: a command on '{self.topics.cmd}' is not finite")
            self.commands = CommandTrack(np.array(times, np.int64), values[0], values[1], labelling)

    def images(self) -> Iterator[ImageMessage]:
        """The depth images in the bag's order; header stamps going back in time are a :class:`BagError`."""
        info_times = np.array([t for t, _ in self.camera_infos], np.int64)
        previous = None
        for index, (c, log_ns, raw) in enumerate(self.reader.messages(connections=self._images)):
            msg = self.reader.deserialize(raw, c.msgtype)
            t_ns = _stamp_ns(msg) if self.image_time == "header" else int(log_ns)
            if previous is not None and t_ns < previous:
                raise BagError(f"{self.path}: image header stamps on '{self.topics.image}' go back in time at "
                               f"image {index} ({(previous - t_ns) / 1e6:.1f} ms earlier than the one before); "
                               f"use --image-time log to time images by their arrival")
            previous = t_ns
            info = None
            if self.camera_infos:
                k = max(0, int(np.searchsorted(info_times, log_ns, side="right")) - 1)
                info = self.camera_infos[k][1]
            yield ImageMessage(index, int(log_ns), t_ns, msg, info)

    def command_span(self) -> list[float] | None:
        """Seconds from the recording's start of the first and the last command (None without commands)."""
        if self.commands is None:
            return None
        times = self.commands.times
        return [round(self.seconds(int(times[0])), 3), round(self.seconds(int(times[-1])), 3)]

    def seconds(self, t_ns: int) -> float:
        """Seconds from the recording's first message."""
        return (t_ns - self.start_ns) / 1e9

    def close(self) -> None:
        self._context.__exit__(None, None, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
