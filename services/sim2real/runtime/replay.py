"""`sim2real replay`: run the deployed policy over a recorded ROS 2 bag, without ROS.

The bag (a rosbag2 folder, or a single ``.mcap`` / ``.db3`` file) is read with the rosbags
library. Every image goes through the node's own pipeline (:class:`~sim2real.runtime.node.DepthToTwist`:
decode, fail-safe checks, the camera mapping, the model's preprocessing, inference), so a replay
shows what the robot would have commanded. The images' intrinsics come as in the node: explicit
ones (``params.camera_*``), else the latest ``sensor_msgs/CameraInfo`` in the bag before each image
(``camera_info_topic``), else the model's trained field of view. One JSON line per image is written
with the action (and ``tie`` when it came from an exact left/right tie) and its timings;
optionally the commands are also written as a bag of geometry_msgs/Twist.

Watchdog timeouts are a property of live time and are not replayed.
"""

from __future__ import annotations

import contextlib
import gc
import json
import sys
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from sim2real.contracts.actions import ACTIONS
from sim2real.contracts.camera import Intrinsics
from sim2real.contracts.manifest import atomic_path
from sim2real.runtime.node import DepthToTwist, LatencyStats, NodeParams
from sim2real.runtime.ros_image import RawImage

IMAGE_TYPE = "sensor_msgs/msg/Image"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TWIST_TYPE = "geometry_msgs/msg/Twist"
STORAGES = ("mcap", "sqlite3")


def _rosbags():
    try:
        from rosbags.highlevel import AnyReader
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore
    except ImportError:
        raise RuntimeError("replay needs the 'rosbags' package (pip install rosbags)") from None
    return AnyReader, Writer, StoragePlugin, get_typestore(Stores.LATEST)


@contextlib.contextmanager
def open_bag(bag: str | Path):
    """An opened rosbags ``AnyReader`` for a bag folder or file; one-line errors when it is not one."""
    bag = Path(bag)
    if not bag.exists():
        raise FileNotFoundError(f"bag not found: {bag}")
    reader_cls, _, _, store = _rosbags()
    try:
        reader = reader_cls([bag], default_typestore=store)
        reader.open()
    except Exception as exc:
        raise ValueError(f"{bag} is not a readable ROS 2 bag: {str(exc).splitlines()[0]}") from None
    try:
        yield reader
    finally:
        reader.close()


def _storage_plugin(storage: str):
    if storage not in STORAGES:
        raise ValueError(f"bag storage must be one of {', '.join(STORAGES)}, got '{storage}'")
    _, _, plugin, _ = _rosbags()
    return plugin.MCAP if storage == "mcap" else plugin.SQLITE3


def record_images(bag: str | Path, images: Iterable[tuple[int, RawImage] | tuple[int, RawImage, Intrinsics]],
                  topic: str = "/camera/depth/image_raw", storage: str = "mcap",
                  frame_id: str = "camera_depth_optical_frame", intrinsics: Intrinsics | None = None,
                  camera_info_topic: str = "/camera/depth/camera_info") -> int:
    """Write ``(timestamp_ns, image)`` pairs as sensor_msgs/Image to a new rosbag2 folder; return the count.

    With ``intrinsics``, a sensor_msgs/CameraInfo with them goes before each image, as a driver publishes;
    an item ``(timestamp_ns, image, intrinsics)`` carries its own image's CameraInfo.
    """
    _, writer_cls, _, store = _rosbags()
    plugin = _storage_plugin(storage)
    image_cls, header_cls, time_cls = (store.types[name] for name in
                                       (IMAGE_TYPE, "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    count = 0
    with writer_cls(Path(bag), version=writer_cls.VERSION_LATEST, storage_plugin=plugin) as writer:
        connection = writer.add_connection(topic, IMAGE_TYPE, typestore=store)
        info_connection = None
        for stamp_ns, raw, *own in images:
            header = header_cls(stamp=time_cls(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame_id)
            camera = own[0] if own else intrinsics
            if camera is not None:
                if info_connection is None:
                    info_connection = writer.add_connection(camera_info_topic, CAMERA_INFO_TYPE, typestore=store)
                info = camera_info_message(store, header, camera)
                writer.write(info_connection, stamp_ns, store.serialize_cdr(info, CAMERA_INFO_TYPE))
            msg = image_cls(header=header, height=raw.height, width=raw.width, encoding=raw.encoding,
                            is_bigendian=raw.is_bigendian, step=raw.step,
                            data=np.frombuffer(raw.data, dtype=np.uint8))
            writer.write(connection, stamp_ns, store.serialize_cdr(msg, IMAGE_TYPE))
            count += 1
    return count


def camera_info_message(store, header, intrinsics: Intrinsics):
    """A rosbags sensor_msgs/CameraInfo for ``intrinsics`` (no distortion, identity rectification)."""
    info_cls, roi_cls = store.types[CAMERA_INFO_TYPE], store.types["sensor_msgs/msg/RegionOfInterest"]
    c = intrinsics
    return info_cls(header=header, height=c.height, width=c.width, distortion_model="plumb_bob",
                    d=np.zeros(5), k=np.array([c.fx, 0, c.cx, 0, c.fy, c.cy, 0, 0, 1], float),
                    r=np.eye(3).ravel(), p=np.array([c.fx, 0, c.cx, 0, 0, c.fy, c.cy, 0, 0, 0, 1, 0], float),
                    binning_x=0, binning_y=0,
                    roi=roi_cls(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def default_out(bag: Path) -> Path:
    """``<bag>.actions.jsonl`` beside the bag (folder or file)."""
    return bag.with_name(bag.name + ".actions.jsonl")


def replay(bag: str | Path, model: str | Path, *, topic: str = "/camera/depth/image_raw",
           backend: str = "auto", out: str | Path | None = None, out_bag: str | Path | None = None,
           out_storage: str = "mcap", params: NodeParams | None = None) -> dict:
    """Run ``model`` over the images on ``topic`` in ``bag``; write JSON lines to ``out``; return a summary."""
    from sim2real.runtime.policy import ModelPolicy

    bag = Path(bag)
    if not bag.exists():
        raise FileNotFoundError(f"bag not found: {bag}")
    out = Path(out) if out else default_out(bag)
    if out_bag is not None and Path(out_bag).exists():
        raise ValueError(f"output bag {out_bag} exists already; rosbags writes new bags only")
    _, writer_cls, _, store = _rosbags()
    params = params or NodeParams(model_path=str(model), backend=backend)
    policy = ModelPolicy(model, backend=backend)
    if policy.isa_note:
        print(f"sim2real replay: note: {policy.isa_note}", file=sys.stderr)
    logged: list[str] = []
    pipeline = DepthToTwist(policy, params, lambda level, message: logged.append(message))
    gc.collect()
    gc.freeze()  # as the node does once it is set up: no collector pauses for start-up objects
    stats = LatencyStats(stages=("read", "convert", "preprocess", "infer", "total"), window=10**7)
    counts = {name: 0 for name in (*ACTIONS, "stop")}
    ties = 0
    writer = None
    with contextlib.ExitStack() as stack:
        reader = stack.enter_context(open_bag(bag))
        stack.callback(lambda: writer is not None and writer.close())
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            images = sorted({c.topic for c in reader.connections if c.msgtype == IMAGE_TYPE})
            raise ValueError(f"{bag} has no topic '{topic}' (image topics in the bag: {', '.join(images) or 'none'})")
        if any(c.msgtype != IMAGE_TYPE for c in connections):
            raise ValueError(f"topic '{topic}' in {bag} is {connections[0].msgtype}, not {IMAGE_TYPE}")
        info_connections = [c for c in reader.connections if c.topic == params.camera_info_topic
                            and c.msgtype == CAMERA_INFO_TYPE] if params.camera_info_topic else []
        if out_bag is not None:
            writer = writer_cls(Path(out_bag), version=writer_cls.VERSION_LATEST,
                                storage_plugin=_storage_plugin(out_storage))
            writer.open()
            twist_conn = writer.add_connection(params.cmd_vel_topic, TWIST_TYPE, typestore=store)
            twist_cls, vector_cls = store.types[TWIST_TYPE], store.types["geometry_msgs/msg/Vector3"]
        with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as lines:
            index = -1
            for connection, timestamp, raw in reader.messages(connections=connections + info_connections):
                if connection.msgtype == CAMERA_INFO_TYPE:
                    pipeline.camera.update(reader.deserialize(raw, connection.msgtype))
                    continue
                index += 1
                start = time.perf_counter()
                msg = reader.deserialize(raw, connection.msgtype)
                read = time.perf_counter()
                twist = pipeline.handle(msg)
                end = time.perf_counter()
                stopped = pipeline.last_action is None
                action = "stop" if stopped else ACTIONS[pipeline.last_action]
                counts[action] += 1
                record = {"index": index, "t_ns": timestamp,
                          "stamp_ns": msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec,
                          "action": action, "linear_x": twist.linear_x, "angular_z": twist.angular_z}
                if pipeline.last_tie:
                    record["tie"] = True
                    ties += 1
                if stopped:
                    record["reason"] = pipeline.last_reason
                else:
                    timing = {"read": (read - start) * 1e3, **pipeline.last_timing_ms, "total": (end - start) * 1e3}
                    stats.add(timing)
                    record["logits"] = [round(float(v), 5) for v in pipeline.last_logits]
                    record["timing_ms"] = {k: round(v, 4) for k, v in timing.items()}
                lines.write(json.dumps(record) + "\n")
                if writer is not None:
                    command = twist_cls(linear=vector_cls(x=twist.linear_x, y=0.0, z=0.0),
                                        angular=vector_cls(x=0.0, y=0.0, z=twist.angular_z))
                    writer.write(twist_conn, timestamp, store.serialize_cdr(command, TWIST_TYPE))
    return {"bag": str(bag), "topic": topic, "frames": sum(counts.values()), "actions": counts,
            "left_right_ties": ties, "camera_intrinsics": pipeline.camera.source,
            "model": str(model), "model_sha256": policy.sha256, "backend": policy.engine.name,
            "latency_ms": stats.summary(), "failsafe_events": logged, "out": str(out),
            **({"out_bag": str(out_bag)} if out_bag is not None else {})}

