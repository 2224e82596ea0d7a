"""``--policy ros2``: evaluate the shipped ROS 2 node itself, over topics, in the closed loop.

The evaluator starts ``sim2real serve`` as its own process, publishes every rendered depth image
(32FC1, sensor-data QoS) on ``camera/depth/image_raw`` and drives the robot with the Twist that
comes back on ``cmd_vel``: exactly what Gazebo's bridge does on the robot's side. Whatever the node
publishes is applied, its fail-safe zero Twist included, so refusals cost the policy progress.

Isolation: each evaluator gets its own ROS namespace (``/sim2real_eval_<id>``, so parallel
workers never hear each other and nothing reaches a robot listening on ``/cmd_vel``) and
localhost-only discovery. The simulator is not real time, so the node's wall-clock watchdog is set
far beyond an episode. Matching answers to images: the node publishes exactly one Twist per image,
plus watchdog zero Twists until its first valid image, so a warm-up image is served first; then
stale commands are drained before each image and the first Twist after it is its answer.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from sim2real.contracts import hysteresis, model_contract
from sim2real.contracts.actions import Twist
from sim2real.contracts.manifest import read_manifest, sha256_file
from sim2real.contracts.preprocessing import PreprocessSpec
from sim2real.contracts.scenario import Robot, Scenario
from sim2real.environment import scoped_environ
from sim2real.eval.policies import Policy, scenario_intrinsics
from sim2real.runtime.middleware import use_large_image_profile
from sim2real.sim.world import Pose2D, World

IMAGE_TOPIC = "camera/depth/image_raw"    # relative: resolved inside the evaluator's namespace
CAMERA_INFO_TOPIC = "camera/depth/camera_info"
CMD_VEL_TOPIC = "cmd_vel"
MODEL_TOPIC = "sim2real_policy/model"
WATCHDOG_S = 86400.0                      # the simulator is not real time: no wall-clock stops
WARM_UP_TRIES = 10                        # flat images (0.2 s apart) sent until the node answers one
UNSERVED_GRACE_S = 0.1
# Image stamps are the episode's time from an origin that alternates between 0 and RESTART_S, so
# each new episode's stamps jump back in time or far beyond the watchdog: the node forgets a
# committed turn (the warm-up images sit half-way).
RESTART_S = 1_000_000.0
_PR_SET_PDEATHSIG = 1


def _resolve_prctl():
    """libc's prctl, looked up here in the parent: the forked child must not take the loader's lock."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _resolve_prctl()


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it if the evaluator dies (Linux), so no node is orphaned."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGTERM))


class Ros2NodePolicy(Policy):
    """The ``sim2real serve`` node in a child process, reached over ROS 2 topics."""

    kind = "ros2"

    def __init__(self, model_path: str | Path, engine: str = "auto", scenario: Scenario | None = None, *,
                 turns: str = "model",
                 reply_timeout_s: float = 5.0, retries: int = 2, startup_timeout_s: float = 120.0):
        try:
            import rclpy
        except ImportError:
            raise RuntimeError("--policy ros2 needs rclpy: install the 'ros' extra "
                               "(pip install -e '.[ros]')") from None
        self.model_path = Path(model_path).resolve()
        self.name = str(model_path)
        self.sha256 = sha256_file(self.model_path)
        self.reply_timeout_s, self.retries = reply_timeout_s, retries
        self.intrinsics = scenario_intrinsics(scenario)
        self.turns = turns
        self.hysteresis = hysteresis.parse(turns, model_contract.runtime_params(
            read_manifest(self.model_path, verify=False), self.model_path)).describe()
        self._dt = 1.0 / (scenario.episode.control_hz if scenario is not None else 10.0)
        self._t = 0.0              # the next image's stamp: the episode's time from its origin
        self.namespace = f"/sim2real_eval_{secrets.token_hex(4)}"
        self._serving = False      # True once the node has answered an image with a moving command
        self._answers: list[tuple[float, float]] = []
        self._models: list[str] = []
        self._process: subprocess.Popen | None = None
        self._context = None
        self._tmp = tempfile.TemporaryDirectory(prefix="sim2real-eval-ros2-")
        self.log_path = Path(self._tmp.name) / "serve.log"
        # The evaluator is the camera here: it writes the images, so it needs the robot's Fast DDS profile
        # (set for this whole process: Fast DDS reads it once, at its first participant).
        use_large_image_profile()
        ros_env = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST", "ROS_LOG_DIR": self._tmp.name,
                   "RCUTILS_COLORIZED_OUTPUT": "0"}
        try:
            self._start_node(engine, scenario, ros_env)
            with scoped_environ(ros_env):
                self._context = rclpy.Context()
                rclpy.init(context=self._context)
            self._build_endpoints(rclpy)
            self._wait_ready(startup_timeout_s)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ set-up
    def _start_node(self, engine: str, scenario: Scenario | None, ros_env: dict[str, str]) -> None:
        command = [sys.executable, "-m", "sim2real.cli", "serve", "--model", str(self.model_path),
                   "--backend", engine, "--image-topic", IMAGE_TOPIC, "--cmd-vel-topic", CMD_VEL_TOPIC,
                   "--camera-info-topic", CAMERA_INFO_TOPIC,
                   "--watchdog-timeout", str(WATCHDOG_S), "--diagnostics-period", "3600",
                   "--hysteresis", self.turns]
        if scenario is not None:   # the scenario's speeds, with the safety envelope set to them
            command += ["--forward-speed", repr(scenario.robot.forward_speed_mps),
                        "--turn-rate", repr(scenario.robot.turn_rate_radps),
                        "--max-linear-speed", repr(scenario.robot.forward_speed_mps),
                        "--max-angular-speed", repr(scenario.robot.turn_rate_radps)]
        command += ["--ros-args", "-r", f"__ns:={self.namespace}"]
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             env={**os.environ, **ros_env}, preexec_fn=_die_with_parent)

    def _build_endpoints(self, rclpy) -> None:
        from geometry_msgs.msg import Twist as TwistMsg
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import String

        self._node = rclpy.create_node("sim2real_evaluator", namespace=self.namespace, context=self._context)
        self._info_pub = self._node.create_publisher(CameraInfo, CAMERA_INFO_TOPIC, qos_profile_sensor_data)
        self._info = None
        if self.intrinsics is not None:
            c = self.intrinsics
            self._info = CameraInfo(width=c.width, height=c.height, distortion_model="plumb_bob",
                                    d=[0.0] * 5, k=[c.fx, 0.0, c.cx, 0.0, c.fy, c.cy, 0.0, 0.0, 1.0],
                                    r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                                    p=[c.fx, 0.0, c.cx, 0.0, 0.0, c.fy, c.cy, 0.0, 0.0, 0.0, 1.0, 0.0])
            self._info.header.frame_id = "camera_depth_optical_frame"
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._image_pub = self._node.create_publisher(Image, IMAGE_TOPIC, qos_profile_sensor_data)
        self._node.create_subscription(TwistMsg, CMD_VEL_TOPIC,
                                       lambda m: self._answers.append((m.linear.x, m.angular.z)), 10)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self._node.create_subscription(String, MODEL_TOPIC, lambda m: self._models.append(m.data), latched)
        self._image = Image()
        self._image.header.frame_id = "camera_depth_optical_frame"

    def _wait_ready(self, timeout_s: float) -> None:
        """Until the node has announced the right model, both topics are matched and it has served a frame.

        Before its first valid image the node's watchdog publishes a zero Twist every tick, which
        would be taken for an answer: a flat warm-up image is sent until a moving command comes
        back (every valid image gets one), after which the node answers once per image.
        """
        end = time.monotonic() + timeout_s
        while not (self._models and self._image_pub.get_subscription_count() > 0
                   and self._node.count_publishers(f"{self.namespace}/{CMD_VEL_TOPIC}") > 0):
            self._tick(end, timeout_s)
        served = json.loads(self._models[-1]).get("sha256")
        if served != self.sha256:
            raise RuntimeError(f"sim2real serve announced model sha256 {served}, expected {self.sha256}")
        from sim2real.runtime.ros_image import encode_depth, fill_image_msg

        spec = PreprocessSpec.from_dict(read_manifest(self.model_path, verify=False)["preprocessing"])
        middle = (spec.min_range_m + spec.max_range_m) / 2
        shape = (self.intrinsics.height, self.intrinsics.width) if self.intrinsics else (spec.height, spec.width)
        warm_up = fill_image_msg(self._image, encode_depth(np.full(shape, middle, np.float32)))
        warm_up.header.stamp.sec, warm_up.header.stamp.nanosec = int(RESTART_S // 2), 0
        for _ in range(WARM_UP_TRIES):
            self._answers.clear()
            self._publish(warm_up)
            pause = time.monotonic() + 0.2
            while time.monotonic() < pause:
                if any(answer != (0.0, 0.0) for answer in self._answers):
                    self._answers.clear()
                    self._serving = True
                    return
                self._tick(end, timeout_s)
        print(f"sim2real eval: warning: sim2real serve refuses a flat {middle:g} m image{self._log_tail()}; "
              f"evaluating anyway", file=sys.stderr)

    def _tick(self, end: float, timeout_s: float) -> None:
        self._check_alive()
        if time.monotonic() > end:
            raise RuntimeError(f"sim2real serve was not ready within {timeout_s:g} s{self._log_tail()}")
        self._executor.spin_once(timeout_sec=0.02)

    # ------------------------------------------------------------------ the loop
    def command(self, depth_m: np.ndarray, pose: Pose2D, world: World, robot: Robot) -> Twist:
        """Publish the image, return the node's answer (the speeds are the node's, set from the scenario)."""
        from sim2real.runtime.ros_image import encode_depth, fill_image_msg

        self._drain()
        msg = fill_image_msg(self._image, encode_depth(depth_m, "32FC1"))
        stamp, self._t = self._t, self._t + self._dt
        for _ in range(1 + self.retries):           # sensor-data QoS is best effort: an image may be lost
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(round(stamp * 1e9), 10**9)
            self._publish(msg)
            end = time.monotonic() + self.reply_timeout_s
            while not self._answers and time.monotonic() < end:
                self._executor.spin_once(timeout_sec=0.01)
            if self._answers:
                return self._answer()
            self._check_alive()
        raise RuntimeError(f"sim2real serve sent no /cmd_vel within {self.reply_timeout_s:g} s for "
                           f"{1 + self.retries} publishes of one image{self._log_tail()}")

    def _publish(self, image) -> None:
        """The image, after its CameraInfo (same stamp), as a camera driver publishes them."""
        if self._info is not None:
            self._info.header.stamp = image.header.stamp
            self._info_pub.publish(self._info)
        self._image_pub.publish(image)

    def _answer(self) -> Twist:
        """The first Twist after the image; until the node has served a frame, the last within a grace
        period (its watchdog's zero Twists may arrive before the answer, never after a moving one)."""
        if not self._serving and self._answers[-1] == (0.0, 0.0):
            grace = time.monotonic() + UNSERVED_GRACE_S
            while time.monotonic() < grace:
                self._executor.spin_once(timeout_sec=0.01)
        linear, angular = self._answers[0] if self._serving else self._answers[-1]
        self._serving = self._serving or (linear, angular) != (0.0, 0.0)
        return Twist(float(linear), float(angular))

    def _drain(self) -> None:
        """Handle what has arrived (late answers, watchdog stops) and forget it."""
        for _ in range(100):
            before = len(self._answers)
            self._executor.spin_once(timeout_sec=0)
            if len(self._answers) == before:
                break
        self._answers.clear()

    def _check_alive(self) -> None:
        if self._process is not None and self._process.poll() is not None:
            raise RuntimeError(f"sim2real serve exited with status {self._process.returncode}{self._log_tail()}")

    def _log_tail(self) -> str:
        try:
            lines = [line for line in self.log_path.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return ""
        return f"; its last log line: {lines[-1].strip()}" if lines else ""

    # ------------------------------------------------------------------ tear-down
    def reset(self) -> None:
        """A new episode: its stamps start from the other origin, which tells the node to forget a committed turn."""
        self._t = RESTART_S if self._t < RESTART_S else 0.0

    def close(self) -> None:
        """Stop the node (SIGINT, then SIGKILL after 10 s) and this side's ROS context. Idempotent."""
        if self._context is not None:
            with contextlib.suppress(Exception):
                self._node.destroy_node()
            self._context.try_shutdown()
            self._context = None
        if self._process is not None:
            if self._process.poll() is None:
                self._process.send_signal(signal.SIGINT)
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            self._process = None
        self._tmp.cleanup()

    def __del__(self):
        with contextlib.suppress(Exception):
            self.close()
