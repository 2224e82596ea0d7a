"""A depth camera driver stand-in, as its own process: publishes a real frame of the set at a fixed rate.

    python tests/helpers_camera.py --frame graspnet_d435_tabletop --count 300 --rate 30

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

from helpers_real_depth import load_frames, raw_image  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frame", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--topic", default="/camera/depth/image_raw")
    parser.add_argument("--match-timeout", type=float, default=60.0)
    args = parser.parse_args()

    import rclpy
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from sim2real.runtime.ros_image import fill_image_msg

    (frame,) = [f for f in load_frames() if f.id == args.frame]
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
