"""Simulator B in the gazebo-eval image: Gazebo (gz sim) driven through ROS 2 and ros_gz_bridge.

Per ``load(world)``: write the SDF world and the bridge YAML, start ``gz sim`` (server only,
headless rendering, paused) and ``ros_gz_bridge``'s ``parameter_bridge``. The episode loop then
runs in lockstep over ROS 2: ``reset_robot`` calls the bridged ``set_pose`` service; ``step``
publishes the Twist on ``/cmd_vel`` and asks ``/world/<name>/control`` for exactly ``dt`` of
physics (``multi_step``), then waits on ``/clock`` until that time has passed; ``robot_pose``
reads the ground-truth odometry; ``render_depth`` returns the newest 32FC1 depth image from the
robot's camera with the scenario's sensor model applied (like every backend); a contact message on
the body's collision is a collision.

Not verified here: Gazebo is not installable on the test machines. The SDF and bridge generation
are unit-tested; this class is exercised only in the gazebo-eval image (see docs/evaluation.md).
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from sim2real.contracts.actions import Twist
from sim2real.contracts.scenario import Scenario
from sim2real.sim.base import SimBackend, StepResult, UnsupportedScenario
from sim2real.sim.gazebo.bridge import ROS_TOPICS, bridge_yaml, services
from sim2real.sim.gazebo.sdf import PHYSICS_STEP_S, ROBOT_NAME, WORLD_NAME, world_sdf
from sim2real.sim.sensors import apply_sensor_model
from sim2real.sim.world import CameraSample, Pose2D, World, nominal_camera

STARTUP_TIMEOUT_S = 60.0
STEP_TIMEOUT_S = 10.0
POSE_TOLERANCE_M = 0.05


def _yaw(q) -> float:
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


class GazeboBackend(SimBackend):
    """Gazebo through ROS 2. Needs ``gz``, ``ros2``, rclpy, nav_msgs and ros_gz_interfaces."""

    name = "gazebo"
    can_drive = True

    def __init__(self, scenario: Scenario, gz_binary: str = "gz", ros2_binary: str = "ros2"):
        super().__init__(scenario)
        if scenario.obstacles.people.count[1] > 0:
            raise UnsupportedScenario("gazebo backend: obstacles.people.count: moving people are not simulated in "
                                      "Gazebo (the world holds them where they start); evaluate them in pybullet")
        for binary in (gz_binary, ros2_binary):
            if shutil.which(binary) is None:
                raise RuntimeError(f"gazebo backend: '{binary}' is not on PATH (it runs in the gazebo-eval image)")
        try:
            import rclpy
            from geometry_msgs.msg import Twist as TwistMsg
            from nav_msgs.msg import Odometry
            from ros_gz_interfaces.msg import Contacts
            from ros_gz_interfaces.srv import ControlWorld, SetEntityPose
            from rosgraph_msgs.msg import Clock
            from sensor_msgs.msg import Image
        except ImportError as exc:
            raise RuntimeError(f"gazebo backend: ROS 2 package missing ({exc.name})") from None
        self._msgs = dict(Twist=TwistMsg, Odometry=Odometry, Contacts=Contacts, ControlWorld=ControlWorld,
                          SetEntityPose=SetEntityPose, Clock=Clock, Image=Image)
        self.gz_binary, self.ros2_binary = gz_binary, ros2_binary
        self._tmpdir = Path(tempfile.mkdtemp(prefix="sim2real-gazebo-"))
        self._procs: list[subprocess.Popen] = []
        self._log = None
        self._lock = threading.Lock()
        self._image = None
        self._odom = None
        self._clock_s = 0.0
        self._contact = False
        self._camera = nominal_camera(scenario)
        if not rclpy.ok():
            rclpy.init()
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data

        self._node = rclpy.create_node(f"sim2real_gazebo_eval_{id(self):x}")
        n = self._node
        self._cmd = n.create_publisher(TwistMsg, ROS_TOPICS["cmd_vel"], 10)
        n.create_subscription(Image, ROS_TOPICS["depth"], self._on_image, qos_profile_sensor_data)
        n.create_subscription(Odometry, ROS_TOPICS["ground_truth"], self._on_odom, 10)
        n.create_subscription(Contacts, ROS_TOPICS["contacts"], self._on_contacts, 10)
        n.create_subscription(Clock, ROS_TOPICS["clock"], self._on_clock, 10)
        names = services(WORLD_NAME)
        self._control = n.create_client(ControlWorld, names["control"])
        self._set_pose = n.create_client(SetEntityPose, names["set_pose"])
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(n)
        self._spinner = threading.Thread(target=self._executor.spin, daemon=True)
        self._spinner.start()

    # ------------------------------------------------------------------ ROS callbacks
    def _on_image(self, msg) -> None:
        if msg.encoding != "32FC1":
            return
        rows = np.frombuffer(bytes(msg.data), dtype=np.uint8).reshape(msg.height, msg.step)
        depth = rows[:, : msg.width * 4].copy().view(np.float32).reshape(msg.height, msg.width)
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        with self._lock:
            self._image = (stamp, depth)

    def _on_odom(self, msg) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        with self._lock:
            self._odom = Pose2D(float(p.x), float(p.y), _yaw(q))

    def _on_contacts(self, msg) -> None:
        if len(msg.contacts):
            with self._lock:
                self._contact = True

    def _on_clock(self, msg) -> None:
        with self._lock:
            self._clock_s = msg.clock.sec + msg.clock.nanosec * 1e-9

    # ------------------------------------------------------------------ processes
    def _stop_processes(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        self._procs = []
        if self._log is not None:
            self._log.close()
            self._log = None

    def _wait_for(self, what: str, ready, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not ready():
            if any(proc.poll() is not None for proc in self._procs):
                raise RuntimeError(f"gazebo backend: a Gazebo or bridge process exited while waiting for {what}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"gazebo backend: no {what} within {timeout_s:g} s")
            time.sleep(0.01)

    def load(self, world: World) -> None:
        self._stop_processes()
        sdf_path, bridge_path = self._tmpdir / "world.sdf", self._tmpdir / "bridge.yaml"
        sdf_path.write_text(world_sdf(self.scenario, world), encoding="utf-8")
        bridge_path.write_text(bridge_yaml(WORLD_NAME), encoding="utf-8")
        log = self._log = open(self._tmpdir / "gazebo.log", "ab")
        self._procs = [
            subprocess.Popen([self.gz_binary, "sim", "-s", "--headless-rendering", str(sdf_path)],
                             stdout=log, stderr=subprocess.STDOUT),
            subprocess.Popen([self.ros2_binary, "run", "ros_gz_bridge", "parameter_bridge", "--ros-args",
                              "-p", f"config_file:={bridge_path}"], stdout=log, stderr=subprocess.STDOUT),
        ]
        with self._lock:
            self._image, self._odom, self._clock_s, self._contact = None, None, 0.0, False
        self._wait_for("world control service", lambda: self._control.service_is_ready(), STARTUP_TIMEOUT_S)
        self._wait_for("set_pose service", lambda: self._set_pose.service_is_ready(), STARTUP_TIMEOUT_S)

    # ------------------------------------------------------------------ lockstep
    def _call(self, client, request) -> object:
        future = client.call_async(request)
        self._wait_for(f"reply from {client.srv_name}", future.done, STEP_TIMEOUT_S)
        return future.result()

    def _advance(self, dt: float) -> None:
        """Run exactly ``dt`` of physics (rounded to whole steps) and wait until the clock shows it."""
        steps = max(1, int(round(dt / PHYSICS_STEP_S)))
        with self._lock:
            target = self._clock_s + steps * PHYSICS_STEP_S - 1e-6
        request = self._msgs["ControlWorld"].Request()
        request.world_control.pause = True
        request.world_control.multi_step = steps
        if not self._call(self._control, request).success:
            raise RuntimeError("gazebo backend: the world refused a step request")
        self._wait_for("the simulation clock", lambda: self._clock_s >= target, STEP_TIMEOUT_S)

    def reset_robot(self, pose: Pose2D) -> None:
        request = self._msgs["SetEntityPose"].Request()
        request.entity.name = ROBOT_NAME
        request.entity.type = 2                      # ros_gz_interfaces/msg/Entity.MODEL
        request.pose.position.x, request.pose.position.y = float(pose.x), float(pose.y)
        request.pose.orientation.z = math.sin(pose.yaw / 2)
        request.pose.orientation.w = math.cos(pose.yaw / 2)
        self._cmd.publish(self._msgs["Twist"]())
        if not self._call(self._set_pose, request).success:
            raise RuntimeError("gazebo backend: set_pose was refused")
        self._advance(0.1)                           # settle on the wheels, as the PyBullet backend does
        self._wait_for("ground-truth pose at the start", lambda: self._odom is not None and math.hypot(
            self._odom.x - pose.x, self._odom.y - pose.y) < POSE_TOLERANCE_M, STEP_TIMEOUT_S)
        with self._lock:
            self._contact = False

    def step(self, command: Twist, dt: float) -> StepResult:
        msg = self._msgs["Twist"]()
        msg.linear.x, msg.angular.z = float(command.linear_x), float(command.angular_z)
        self._cmd.publish(msg)
        self._advance(dt)
        with self._lock:
            collided = self._contact
        return StepResult(self.robot_pose(), collided)

    def robot_pose(self) -> Pose2D:
        with self._lock:
            if self._odom is None:
                raise RuntimeError("gazebo backend: no ground-truth pose yet (call load and reset_robot first)")
            return self._odom

    def render_depth(self, pose: Pose2D, camera: CameraSample, rng: np.random.Generator) -> np.ndarray:
        if camera != self._camera:
            raise UnsupportedScenario("gazebo backend: the camera is fixed in the SDF world; per-image camera "
                                      "randomization is not supported (evaluation uses the nominal camera)")
        here = self.robot_pose()
        if math.hypot(here.x - pose.x, here.y - pose.y) > POSE_TOLERANCE_M:
            raise UnsupportedScenario("gazebo backend: renders only from the robot's own camera, not at "
                                      "an arbitrary pose")
        with self._lock:
            target = self._clock_s - 1.0 / self.scenario.episode.control_hz
        self._wait_for("a depth image", lambda: self._image is not None and self._image[0] >= target,
                       STEP_TIMEOUT_S)
        with self._lock:
            ideal = self._image[1].copy()
        ideal[~np.isfinite(ideal)] = np.nan
        return apply_sensor_model(ideal, self.scenario.camera, camera, rng)

    def close(self) -> None:
        self._stop_processes()
        self._executor.shutdown()
        self._node.destroy_node()
        shutil.rmtree(self._tmpdir, ignore_errors=True)
