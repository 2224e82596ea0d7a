"""Image published → cmd_vel received, across processes through real ROS 2, at 224×224 16UC1.

Two systems are measured in the same run, one after the other, each as its own node process,
driven by a third process that publishes a 224×224 16UC1 depth image (millimetres, a depth
camera's raw form) (paced at ``rate_hz``, one
image in flight) and times the arrival of the Twist:

- ``chapter_baseline``: the chapter's node as written there: cv_bridge-style decode to 32FC1
  (a plain conversion of the millimetres, as ``imgmsg_to_cv2(msg, "32FC1")`` does),
  resize to 224, per-image ``(d - mean) / std``, the project's 1-channel ResNet18 in PyTorch
  eager FP32 (random weights: latency does not depend on them), argmax, Twist.
- ``sim2real``: ``sim2real serve`` with the given INT8 model on ONNX Runtime: the contract's
  preprocessing from the manifest, the fail-safe checks, per-stage timing.

Run directly for a one-off figure: ``python -m sim2real.bench.ros2_loop --model M.int8.onnx``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sim2real.bench.stats import percentiles
from sim2real.contracts.manifest import read_manifest
from sim2real.runtime.middleware import profile_environment

SIZE = 224
ENCODING = "16UC1"
READY_TIMEOUT_S = 120.0
DIAGNOSTICS_PERIOD_S = 1.0


def _ros_env(domain_id: int, log_dir: str) -> dict:
    """Every process of the loop (driver and nodes) with the robot's Fast DDS profile, as on the robot."""
    env = dict(os.environ)
    env.update(profile_environment(env))
    env.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_LOCALHOST_ONLY="1",
               ROS_LOG_DIR=log_dir, RCUTILS_COLORIZED_OUTPUT="0", PYTHONUNBUFFERED="1")
    return env


def _images(count: int = 8, size: int = SIZE) -> list[np.ndarray]:
    """Depth scenes in metres: a far wall with a box at a different place in each, a few dropouts."""
    rng = np.random.default_rng(0)
    scenes = []
    for index in range(count):
        depth = np.full((size, size), 4.0, np.float32) + rng.normal(0, 0.02, (size, size)).astype(np.float32)
        left = int(rng.integers(0, size - 60))
        depth[size // 3:, left:left + 60] = 0.6 + 0.1 * index
        depth[rng.random((size, size)) < 0.02] = np.nan
        scenes.append(depth)
    return scenes


def _stop(process: subprocess.Popen, timeout: float = 15.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _measure(name: str, node_cmd: list[str], env: dict, work: Path, repeats: int, warmup: int,
             rate_hz: float, diagnostics: bool) -> dict:
    node_out = work / f"{name}.node.out"
    with open(node_out, "w") as out, open(work / f"{name}.node.log", "w") as log:
        node = subprocess.Popen(node_cmd, env=env, stdout=out, stderr=log)
        try:
            drive = subprocess.run(
                [sys.executable, "-m", "sim2real.bench.ros2_loop", "_drive", "--repeats", str(repeats),
                 "--warmup", str(warmup), "--rate-hz", str(rate_hz), *(["--diagnostics"] if diagnostics else [])],
                env=env, capture_output=True, text=True, timeout=READY_TIMEOUT_S + repeats * 2.0, check=False)
        finally:
            _stop(node)
    if drive.returncode != 0:
        tail = (work / f"{name}.node.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"ros2 loop '{name}' failed: {drive.stderr.strip()[-1000:]}\nnode log: {tail}")
    result = json.loads(drive.stdout.strip().splitlines()[-1])
    result["load_avg_1m"] = round(os.getloadavg()[0], 2)
    node_lines = node_out.read_text().strip().splitlines()
    if node_lines and node_lines[-1].startswith("{"):
        result.setdefault("stages_ms", json.loads(node_lines[-1]))
    return result


def bench_ros2_loop(model_int8: Path, repeats: int, rate_hz: float = 30.0, warmup: int = 30) -> dict:
    """p50/p99 (ms) of image publish → cmd_vel receive for the chapter's node and for ``sim2real serve``."""
    if importlib.util.find_spec("rclpy") is None:
        raise RuntimeError("the ROS 2 loop bench needs rclpy and the message packages (the 'ros' extra)")
    model_int8 = Path(model_int8).resolve()
    if not model_int8.exists():
        raise FileNotFoundError(f"model not found: {model_int8}")
    domain_id = 10 + os.getpid() % 80
    common = {"image": f"{SIZE}x{SIZE} {ENCODING}", "rate_hz": rate_hz,
              "transport": "rclpy, rmw_fastrtps_cpp, loopback, publisher and node in separate processes"}
    with tempfile.TemporaryDirectory(prefix="sim2real-ros2-loop-") as tmp:
        work = Path(tmp)
        env = _ros_env(domain_id, str(work / "roslog"))
        chapter = _measure("chapter_baseline", [sys.executable, "-m", "sim2real.bench.ros2_loop", "_chapter_node"],
                           env, work, repeats, warmup, rate_hz, diagnostics=False)
        serve_cmd = [sys.executable, "-m", "sim2real.runtime.cli", "serve", "--model", str(model_int8),
                     "--backend", "onnxruntime", "--diagnostics-period", str(DIAGNOSTICS_PERIOD_S),
                     "--watchdog-timeout", "2.0"]
        ours = _measure("sim2real", serve_cmd, env, work, repeats, warmup, rate_hz, diagnostics=True)
    spec = read_manifest(model_int8)["preprocessing"]
    chapter.update(common, approach="PyTorch eager FP32 ResNet18, per-image mean/std", model_input=f"{SIZE}x{SIZE}")
    ours.update(common, approach="ONNX Runtime INT8, the manifest's preprocessing, fail-safe checks",
                model=str(model_int8), model_input=f"{spec['width']}x{spec['height']}",
                speedup_p50=round(chapter["p50"] / ours["p50"], 2),
                speedup_p99=round(chapter["p99"] / ours["p99"], 2))
    return {"chapter_baseline": chapter, "sim2real": ours}


def _drive(args: argparse.Namespace) -> int:
    """Publisher and cmd_vel receiver: publish one image, wait for its Twist, repeat; print JSON."""
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import Twist
    from sensor_msgs.msg import Image

    from sim2real.runtime.node import make_executor
    from sim2real.runtime.ros_image import encode_depth, fill_image_msg

    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("sim2real_bench_driver", context=context)
    received: list[float] = []
    stops = []

    def on_twist(msg) -> None:
        (received if msg.linear.x or msg.angular.z else stops).append(time.perf_counter())

    node.create_subscription(Twist, "/cmd_vel", on_twist, 10)
    diagnostics: list = []
    if args.diagnostics:
        node.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    publisher = node.create_publisher(Image, "/camera/depth/image_raw", 10)
    messages = [fill_image_msg(Image(), encode_depth(depth, ENCODING)) for depth in _images()]
    executor = make_executor(context)
    executor.add_node(node)

    def wait_reply(deadline: float) -> float | None:
        while time.perf_counter() < deadline:
            executor.spin_once(timeout_sec=0.005)
            if received:
                return received.pop(0)
        return None

    ready_by = time.perf_counter() + READY_TIMEOUT_S
    while True:
        publisher.publish(messages[0])
        if wait_reply(time.perf_counter() + 0.2) is not None:
            break
        if time.perf_counter() > ready_by:
            raise SystemExit("no Twist from the node under test")
    stops.clear()
    samples, period, timeouts = [], 1.0 / args.rate_hz, 0
    for index in range(args.warmup + args.repeats):
        executor.spin_once(timeout_sec=0)
        received.clear()
        message = messages[index % len(messages)]
        sent = time.perf_counter()
        publisher.publish(message)
        arrived = wait_reply(sent + 5.0)
        if arrived is None:
            timeouts += 1
        elif index >= args.warmup:
            samples.append((arrived - sent) * 1e3)
        time.sleep(max(0.0, sent + period - time.perf_counter()))
    result = {**percentiles(samples), "lost": timeouts, "zero_twists": len(stops)}
    if args.diagnostics:
        result["stages_ms"] = _stages_from_diagnostics(executor, diagnostics)
    print(json.dumps(result), flush=True)
    node.destroy_node()
    context.try_shutdown()
    return 0


def _stages_from_diagnostics(executor, diagnostics: list) -> dict:
    """The node's own per-stage p50/p99 from its next /diagnostics message."""
    diagnostics.clear()
    deadline = time.perf_counter() + 3 * DIAGNOSTICS_PERIOD_S + 2
    while not diagnostics and time.perf_counter() < deadline:
        executor.spin_once(timeout_sec=0.1)
    if not diagnostics:
        return {}
    values = {kv.key: kv.value for status in diagnostics[-1].status for kv in status.values}
    stages: dict = {}
    for key, value in values.items():
        if key.endswith(("_ms_p50", "_ms_p99")):
            stage, stat = key[:-7], key[-3:]
            stages.setdefault(stage, {})[stat] = float(value)
    return stages


def _chapter_node(_args: argparse.Namespace) -> int:
    """The chapter's node, faithfully: no fail-safe, per-image normalisation, PyTorch eager at 224."""
    import rclpy
    import rclpy.executors
    import torch
    from geometry_msgs.msg import Twist
    from sensor_msgs.msg import Image

    from sim2real.train.model import build_model

    try:
        import cv2

        def resize(depth):
            return cv2.resize(depth, (SIZE, SIZE))
    except ImportError:  # same bilinear resampling as cv2.INTER_LINEAR, without OpenCV installed
        def resize(depth):
            tensor = torch.from_numpy(np.ascontiguousarray(depth))[None, None]
            return torch.nn.functional.interpolate(tensor, size=(SIZE, SIZE), mode="bilinear",
                                                   align_corners=False)[0, 0].numpy()

    def imgmsg_to_cv2(msg):  # what cv_bridge's imgmsg_to_cv2(msg, "32FC1") does: a plain conversion
        pixel = np.float32 if msg.encoding == "32FC1" else np.uint16
        dtype = np.dtype(pixel).newbyteorder(">" if msg.is_bigendian else "<")
        image = np.ndarray(shape=(msg.height, msg.width), dtype=dtype, buffer=msg.data,
                           strides=(msg.step, dtype.itemsize))
        return image.astype(np.float32)

    model = build_model("resnet18", in_channels=1).eval()
    timings: dict[str, list[float]] = {"convert": [], "preprocess": [], "infer": [], "publish": []}

    rclpy.init()
    node = rclpy.create_node("depth_policy")
    publisher = node.create_publisher(Twist, "/cmd_vel", 10)

    def callback(msg):
        t0 = time.perf_counter()
        depth = imgmsg_to_cv2(msg)
        t1 = time.perf_counter()
        depth = resize(depth)
        depth = (depth - depth.mean()) / depth.std()
        x = torch.from_numpy(depth).float().unsqueeze(0).unsqueeze(0)
        t2 = time.perf_counter()
        with torch.no_grad():
            action = model(x).argmax().item()
        t3 = time.perf_counter()
        twist = Twist()
        if action == 0:
            twist.linear.x = 0.5
        elif action == 1:
            twist.angular.z = 0.5
        else:
            twist.angular.z = -0.5
        publisher.publish(twist)
        t4 = time.perf_counter()
        for stage, (a, b) in zip(timings, ((t0, t1), (t1, t2), (t2, t3), (t3, t4))):
            timings[stage].append((b - a) * 1e3)

    node.create_subscription(Image, "/camera/depth/image_raw", callback, 10)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    summary = {stage: {k: v for k, v in percentiles(values).items() if k in ("p50", "p99")}
               for stage, values in timings.items() if values}
    print(json.dumps(summary), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim2real.bench.ros2_loop", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="role")
    p = sub.add_parser("_drive")
    p.add_argument("--repeats", type=int, required=True)
    p.add_argument("--warmup", type=int, default=30)
    p.add_argument("--rate-hz", type=float, default=30.0)
    p.add_argument("--diagnostics", action="store_true")
    p.set_defaults(func=_drive)
    sub.add_parser("_chapter_node").set_defaults(func=_chapter_node)
    parser.add_argument("--model", help="INT8 ONNX model to bench (with its manifest)")
    parser.add_argument("--repeats", type=int, default=300)
    parser.add_argument("--rate-hz", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.role:
        return args.func(args)
    if not args.model:
        parser.error("--model is required")
    print(json.dumps(bench_ros2_loop(Path(args.model), args.repeats, rate_hz=args.rate_hz), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
