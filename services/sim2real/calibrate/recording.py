"""Depth frames and their CameraInfo from a rosbag2 recording (MCAP or sqlite3), for ``calibrate``.

The bag is read with the rosbags library, as ``replay`` reads it. Each depth image is paired with
the latest CameraInfo stamped at or before it (else the first one), whose size must be the
image's. A bag without the depth topic or without CameraInfo, a topic of another message type,
an image that is not depth, or header stamps that go back in time is refused with one line.

A long recording is thinned to at most ``max_frames`` frames, kept in runs of ``BLOCK`` consecutive
frames spread evenly over it (a static stretch stays a stretch); every image's stamp and encoding
are still checked.
"""

from __future__ import annotations

import bisect
import hashlib
from pathlib import Path

import numpy as np

from sim2real.calibrate.fit import Frame
from sim2real.contracts.camera import CameraError, Intrinsics
from sim2real.runtime.replay import CAMERA_INFO_TYPE, IMAGE_TYPE, open_bag
from sim2real.runtime.ros_image import ENCODINGS, ImageError, decode_depth

BLOCK = 10
MAX_FRAMES = 200


def kept_indices(total: int, max_frames: int, block: int = BLOCK) -> set[int] | None:
    """Which of ``total`` frames to keep: all (None), or runs of ``block`` spread evenly."""
    if max_frames < 1:
        raise ValueError(f"--max-frames must be at least 1, got {max_frames}")
    if total <= max_frames:
        return None
    block = min(block, max_frames)
    starts = np.linspace(0, total - block, max(max_frames // block, 1)).round().astype(int)
    return {int(start) + i for start in starts for i in range(block)}


def bag_sha256(bag: Path) -> str:
    """sha256 over the bag's files (a folder's, sorted by name, with their names), for lineage."""
    files = sorted(p for p in bag.rglob("*") if p.is_file()) if bag.is_dir() else [bag]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(bag if bag.is_dir() else bag.parent).as_posix().encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _stamp(msg) -> int:
    return int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)


def _check_topic(reader, bag: Path, topic: str, msgtype: str, what: str) -> list:
    connections = [c for c in reader.connections if c.topic == topic]
    if not connections:
        present = sorted({c.topic for c in reader.connections if c.msgtype == msgtype})
        raise ValueError(f"{bag} has no {what} topic '{topic}' ({msgtype} topics in the bag: "
                         f"{', '.join(present) or 'none'})")
    wrong = [c.msgtype for c in connections if c.msgtype != msgtype]
    if wrong:
        raise ValueError(f"topic '{topic}' in {bag} is {wrong[0]}, not {msgtype}")
    return connections


def read_depth_frames(bag: str | Path, image_topic: str = "/camera/depth/image_raw",
                      camera_info_topic: str = "/camera/depth/camera_info", progress=None,
                      max_frames: int = MAX_FRAMES) -> list[Frame]:
    """The depth images on ``image_topic`` as :class:`Frame` (metres, NaN = no return, fx in pixels)."""
    bag = Path(bag)
    with open_bag(bag) as reader:
        images = _check_topic(reader, bag, image_topic, IMAGE_TYPE, "depth image")
        infos = _check_topic(reader, bag, camera_info_topic, CAMERA_INFO_TYPE, "CameraInfo")
        keep = kept_indices(sum(int(c.msgcount) for c in images), max_frames)
        seen, last_stamp = 0, None
        info_stamps: list[int] = []
        info_values: list[Intrinsics] = []
        raw_images = []
        for connection, _, raw in reader.messages(connections=images + infos):
            msg = reader.deserialize(raw, connection.msgtype)
            if connection.msgtype == CAMERA_INFO_TYPE:
                try:
                    intrinsics = Intrinsics.from_camera_info(msg)
                except (CameraError, TypeError, ValueError) as exc:
                    raise ValueError(f"{bag}: a CameraInfo on '{camera_info_topic}' is unusable: "
                                     f"{str(exc).splitlines()[0]}") from None
                stamp = _stamp(msg)
                index = bisect.bisect_right(info_stamps, stamp)
                info_stamps.insert(index, stamp)
                info_values.insert(index, intrinsics)
                continue
            stamp, index = _stamp(msg), seen
            seen += 1
            if last_stamp is not None and stamp < last_stamp:
                raise ValueError(f"{bag}: header stamps on '{image_topic}' go back in time (image {index} "
                                 f"at {stamp} ns after one at {last_stamp} ns): out of order")
            last_stamp = stamp
            if progress is not None:
                progress.update(1)
            try:
                if msg.encoding not in ENCODINGS:
                    raise ImageError(f"encoding {str(msg.encoding)[:40]!r} is not a depth encoding "
                                     f"(expected one of {', '.join(ENCODINGS)})")
                if keep is not None and index not in keep:
                    continue
                depth = decode_depth(msg)
            except ImageError as exc:
                raise ValueError(f"{bag}: image {index} on '{image_topic}' is not a depth image: {exc}") from None
            raw_images.append((stamp, depth, msg.encoding == "16UC1"))
    if not raw_images:
        raise ValueError(f"{bag}: no image on '{image_topic}'")
    if not info_values:
        raise ValueError(f"{bag}: no CameraInfo on '{camera_info_topic}'")
    frames = []
    for index, (stamp, depth, millimetres) in enumerate(raw_images):
        info = info_values[max(bisect.bisect_right(info_stamps, stamp) - 1, 0)]
        if (info.width, info.height) != (depth.shape[1], depth.shape[0]):
            raise ValueError(f"{bag}: image {index} is {depth.shape[1]}x{depth.shape[0]} but its CameraInfo is "
                             f"for {info.width}x{info.height}")
        frames.append(Frame(depth, info.fx, stamp, millimetres))
    return frames
