"""A depth camera driver stand-in, as its own process: publishes a depth frame at a fixed rate.

    python tests/helpers_camera.py --frame graspnet_d435_tabletop --size 1280x720 --count 300 --rate 30

The frame is that real frame of the set when the set is here (helpers_real_depth.frames_dir), else
a room-like depth image of ``--size`` made here: what the transport carries is the same size and
encoding either way.

It publishes 16UC1 sensor_msgs/Image with sensor-data QoS (what camera drivers do) on ``--topic``
once the first subscriber has matched, paced on an absolute schedule, then prints one JSON line
``{"published": N, "width": W, "height": H}``. Its DDS settings come from the environment, as a
real driver's would (the test exports the robot's Fast DDS profile to it).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import numpy as np  # noqa: E402
from helpers_real_depth import Frame, frames_dir, load_frames, raw_image  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frame", required=True)
    parser.add_argument("--size", required=True, help="WIDTHxHEIGHT of the frame, e.g. 640x480")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--topic", default="/camera/depth/image_raw")
    parser.add_argument("--match-timeout", type=float, default=60.0)
    args = parser.parse_args()

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from sim2real.runtime.ros_image import fill_image_msg

    width, height = (int(v) for v in args.size.split("x"))
    if frames_dir() is not None:
        (frame,) = [f for f in load_frames() if f.id == args.frame]
    else:
        depth = np.full((height, width), 3000, np.uint16)
        depth[height // 2:] = np.linspace(600, 3000, height - height // 2, dtype=np.uint16)[:, None]
        frame = Frame(f"made_{args.size}", depth, {"id": args.frame})
    assert frame.depth_mm.shape == (height, width), f"{frame.id} is not {args.size}"
    rclpy.init()
    node = rclpy.create_node("depth_camera_stand_in")
    publisher = node.create_publisher(Image, args.topic, qos_profile_sensor_data)
    msg = fill_image_msg(Image(), raw_image(frame, "16UC1"))
    msg.header.frame_id = "camera_depth_optical_frame"
    deadline = time.monotonic() + args.match_timeout
    while publisher.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            print(f"no subscriber on {args.topic} within {args.match_timeout:g} s", file=sys.stderr)
            return 1
        time.sleep(0.05)
    time.sleep(0.5)
    start = time.monotonic()
    for index in range(args.count):
        msg.header.stamp = node.get_clock().now().to_msg()
        publisher.publish(msg)
        time.sleep(max(0.0, start + (index + 1) / args.rate - time.monotonic()))
    time.sleep(1.0)  # the last frames are still on their way: keep the writer (and its segment) alive
    print(json.dumps({"published": args.count, "width": msg.width, "height": msg.height}), flush=True)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
