"""`sim2real serve` as its own process, driven from this process with real rclpy over loopback.

The node runs the tiny left/right model with a 0.5 s watchdog, its image topic set by a flag and
/cmd_vel remapped by --ros-args. Timing bounds are generous (a loaded 2-core machine); what is
asserted is behaviour: which Twist comes back, that a stop comes after a stale camera and not
before the timeout, that each reason is logged once, and that the node keeps serving.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers_models import depth_scene, tiny_model  # noqa: E402
from helpers_ros import ros_environment  # noqa: E402
from sim2real.contracts.manifest import read_manifest  # noqa: E402
from sim2real.runtime.ros_image import encode_depth, fill_image_msg  # noqa: E402

rclpy = pytest.importorskip("rclpy")

TIMEOUT_S = 0.5
SLACK_S = 2.0
FORWARD, TURN = 0.3, 0.7
IMAGE_TOPIC, CMD_TOPIC = "/front/depth/image_raw", "/robot/cmd_vel"
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def ros_env(tmp_path_factory):
    with ros_environment(tmp_path_factory.mktemp("roslog"), domain_base=100) as values:
        yield values


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def node(ros_env, model, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("node") / "node.log"
    command = [sys.executable, "-m", "sim2real.runtime.cli", "serve", "--model", str(model),
               "--image-topic", IMAGE_TOPIC, "--forward-speed", str(FORWARD), "--turn-rate", str(TURN),
               "--max-angular-speed", str(TURN),
               "--watchdog-timeout", str(TIMEOUT_S), "--diagnostics-period", "0.5",
               "--ros-args", "-r", f"/cmd_vel:={CMD_TOPIC}"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    process.log_path = log_path
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


class Talker:
    """Publishes depth images and collects what the node publishes, in this process."""

    def __init__(self):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import Twist
        from rclpy.qos import (
            DurabilityPolicy,
            QoSProfile,
            ReliabilityPolicy,
            qos_profile_sensor_data,
        )
        from sensor_msgs.msg import Image
        from std_msgs.msg import String

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("test_talker", context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.twists: list[tuple[float, float, float]] = []
        self.models: list[str] = []
        self.diagnostics: list = []
        self.node.create_subscription(Twist, CMD_TOPIC, lambda m: self.twists.append(
            (time.monotonic(), m.linear.x, m.angular.z)), 10)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(String, "/sim2real_policy/model", lambda m: self.models.append(m.data), latched)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.publisher = self.node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
        self._image_cls = Image

    def image(self, scene: str, encoding: str = "32FC1", **kwargs):
        return fill_image_msg(self._image_cls(), encode_depth(depth_scene(scene, **kwargs), encoding))

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.01)

    def wait(self, predicate, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            self.executor.spin_once(timeout_sec=0.01)
        return predicate()

    def stream_until(self, msg, want: tuple[float, float], timeout: float = 20.0, period: float = 0.05):
        """Publish ``msg`` every ``period`` until a Twist equal to ``want`` arrives; return its time."""
        end = time.monotonic() + timeout
        start = time.monotonic()
        while time.monotonic() < end:
            self.publisher.publish(msg)
            self.spin(period)
            for stamp, linear, angular in self.twists:
                if stamp >= start and (linear, angular) == pytest.approx(want):
                    return stamp
        raise AssertionError(f"no Twist {want} within {timeout} s; last: {self.twists[-3:]}")

    def first_twist_after(self, since: float, want, timeout: float):
        ok = self.wait(lambda: any(t >= since and (x, z) == pytest.approx(want) for t, x, z in self.twists), timeout)
        assert ok, f"no Twist {want} within {timeout:.1f} s"
        return next(t for t, x, z in self.twists if t >= since and (x, z) == pytest.approx(want))

    def close(self) -> None:
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture(scope="module")
def talker(ros_env, node):
    talker = Talker()
    yield talker
    talker.close()


def _log(node) -> str:
    return node.log_path.read_text(errors="replace")


ZERO, RIGHT, LEFT, AHEAD = (0.0, 0.0), (0.0, -TURN), (0.0, TURN), (FORWARD, 0.0)


def test_node_latches_which_model_it_runs(node, talker, model):
    assert talker.wait(lambda: talker.models or node.poll() is not None, 60), "node did not come up"
    assert node.poll() is None, _log(node)
    info = json.loads(talker.models[-1])
    assert info["sha256"] == read_manifest(model)["sha256"]
    assert info["backend"] == "onnxruntime" and info["preprocessing"]["width"] == 32
    assert info["camera"]["hfov_deg"] == 87.0
    assert talker.wait(lambda: f"sha256 {info['sha256']}" in _log(node), 10), _log(node)


def test_before_any_image_the_node_publishes_zero(node, talker):
    assert talker.first_twist_after(0.0, ZERO, 10)


@pytest.mark.parametrize("scene, encoding, size, want", [
    ("obstacle_left", "32FC1", {}, RIGHT),
    ("obstacle_right", "16UC1", {"height": 120, "width": 160}, LEFT),
    ("open", "16UC1", {"height": 31, "width": 45}, AHEAD),
    ("open", "32FC1", {"height": 480, "width": 640}, AHEAD),
])
def test_depth_images_give_twists(talker, scene, encoding, size, want):
    talker.stream_until(talker.image(scene, encoding, **size), want)


def test_big_endian_padded_image_gives_a_twist(talker):
    msg = talker.image("obstacle_left")
    raw = encode_depth(depth_scene("obstacle_left"), "16UC1", big_endian=True, row_padding=6)
    talker.stream_until(fill_image_msg(msg, raw), RIGHT)


@pytest.mark.parametrize("make_bad, reason", [
    (lambda t: t.image("invalid"), "more than 50% of the pixels the model sees hold no return"),
    (lambda t: _with(t.image("open"), encoding="rgb8"), "encoding 'rgb8' is not a depth encoding"),
    (lambda t: _with(t.image("open"), height=47), "data holds"),
    (lambda t: t.image("touching"), "model output [nan, nan, nan] is not 3 finite logits"),
])
def test_unusable_image_or_bad_inference_gives_zero_then_node_keeps_serving(node, talker, make_bad, reason):
    talker.stream_until(talker.image("obstacle_left"), RIGHT)
    bad = make_bad(talker)
    sent = time.monotonic()
    for _ in range(6):
        talker.publisher.publish(bad)
        talker.spin(0.05)
    stop = talker.first_twist_after(sent, ZERO, TIMEOUT_S + SLACK_S)
    assert stop - sent < TIMEOUT_S + SLACK_S
    talker.stream_until(talker.image("obstacle_right"), LEFT)
    assert sum(reason in line for line in _log(node).splitlines() if "publishing zero Twist" in line) == 1, _log(node)
    assert node.poll() is None


def test_stopped_camera_gives_zero_after_the_timeout_then_serving_resumes(node, talker):
    last = talker.stream_until(talker.image("obstacle_left"), RIGHT)
    stopped_at = time.monotonic()
    stop = talker.first_twist_after(last, ZERO, TIMEOUT_S + SLACK_S)
    assert 0.9 * TIMEOUT_S <= stop - min(last, stopped_at) <= TIMEOUT_S + SLACK_S
    talker.spin(1.0)
    repeats = [t for t, x, z in talker.twists if t > stop and (x, z) == ZERO]
    assert repeats, "the watchdog keeps the robot stopped while the camera is silent"
    talker.stream_until(talker.image("open"), AHEAD)
    assert f"no valid depth image for more than {TIMEOUT_S:g} s" in _log(node)
    assert "serving again" in _log(node)


def test_diagnostics_report_stage_latencies(talker):
    talker.stream_until(talker.image("open"), AHEAD)
    talker.diagnostics.clear()
    assert talker.wait(lambda: talker.diagnostics, 10)
    values = {kv.key: kv.value for kv in talker.diagnostics[-1].status[0].values}
    for stage in ("convert", "preprocess", "infer", "publish", "total"):
        assert float(values[f"{stage}_ms_p99"]) >= float(values[f"{stage}_ms_p50"]) >= 0.0
    assert int(values["frames"]) > 0 and len(values["model_sha256"]) == 64


def test_camera_info_maps_the_images_and_a_too_narrow_camera_is_refused(node, talker):
    """The node follows the camera's CameraInfo: a 30° camera covers too little of the model's 87° view
    (zero Twist, one log line); the right CameraInfo brings it back."""
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo

    from sim2real.contracts.camera import Intrinsics

    def info(hfov_deg: float):
        k = Intrinsics.from_fov(64, 48, hfov_deg)
        return CameraInfo(width=64, height=48, k=[k.fx, 0.0, k.cx, 0.0, k.fy, k.cy, 0.0, 0.0, 1.0])

    publisher = talker.node.create_publisher(CameraInfo, "/camera/depth/camera_info", qos_profile_sensor_data)
    talker.stream_until(talker.image("obstacle_left"), RIGHT)
    narrow, image = info(30.0), talker.image("obstacle_left")
    sent = time.monotonic()
    for _ in range(6):
        publisher.publish(narrow)
        talker.publisher.publish(image)
        talker.spin(0.05)
    talker.first_twist_after(sent, ZERO, TIMEOUT_S + SLACK_S)
    assert talker.wait(lambda: "field of view, below the 50% per axis" in _log(node), 10), _log(node)
    end = time.monotonic() + 20
    while time.monotonic() < end and not any(t > sent and (x, z) == pytest.approx(RIGHT)
                                             for t, x, z in talker.twists[-3:]):
        publisher.publish(info(87.0))
        talker.publisher.publish(image)
        talker.spin(0.05)
    assert (talker.twists[-1][1], talker.twists[-1][2]) == pytest.approx(RIGHT)
    assert "camera (camera_info): 64x48" in _log(node)


def test_sigint_stops_the_robot_and_exits_cleanly(node, talker):
    talker.stream_until(talker.image("open"), AHEAD)
    sent = time.monotonic()
    node.send_signal(signal.SIGINT)
    assert node.wait(timeout=20) == 0, _log(node)
    assert talker.first_twist_after(sent, ZERO, 5)
    assert "shutting down: published a zero Twist" in _log(node)
    assert "Traceback" not in _log(node)


def _with(msg, **fields):
    for key, value in fields.items():
        setattr(msg, key, value)
    return msg


@pytest.mark.parametrize("args, message", [
    (["--model", "/nonexistent/model.onnx"], "sim2real serve: error: model not found: /nonexistent/model.onnx"),
    ([], "sim2real serve: error: no model: set --model or the model_path parameter"),
    (["--ros-args", "-p", "watchdog_timeout_s:=0.0", "-p", "model_path:=x"],
     "sim2real serve: error: watchdog_timeout_s must be > 0, got 0.0"),
])
def test_serve_bad_input_is_one_line_and_exit_2(ros_env, args, message):
    result = subprocess.run([sys.executable, "-m", "sim2real.runtime.cli", "serve", *args], capture_output=True,
                            text=True, timeout=60, env=dict(os.environ))
    assert result.returncode == 2 and result.stderr.strip() == message, result.stderr


@pytest.mark.slow
def test_ros2_loop_bench_runs_both_nodes(ros_env, model):
    """Plumbing of `make bench`'s ROS 2 loop (figures are the bench's business, not asserted here)."""
    pytest.importorskip("torch")
    from sim2real.bench.ros2_loop import bench_ros2_loop

    result = bench_ros2_loop(model, repeats=5, warmup=3, rate_hz=50.0)
    assert set(result) == {"chapter_baseline", "sim2real"}
    for figures in result.values():
        assert figures["n"] == 5 and figures["lost"] == 0 and 0 < figures["p50"] <= figures["p99"]
    assert {"convert", "preprocess", "infer", "publish"} <= set(result["sim2real"]["stages_ms"])
    assert {"convert", "preprocess", "infer", "publish"} <= set(result["chapter_baseline"]["stages_ms"])
    assert result["sim2real"]["model_input"] == "32x24" and result["chapter_baseline"]["model_input"] == "224x224"
