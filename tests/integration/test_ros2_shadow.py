"""`sim2real serve --shadow` as its own process beside a driver, with real rclpy over loopback.

This process is the driver (it publishes on /cmd_vel, with values no node output can take) and
the camera. Nothing the node publishes may reach /cmd_vel: not its commands, not the watchdog's
zero Twists, not the one it sends when it shuts down. They reach the shadow topic instead, and
/diagnostics reports the agreement with the driver. A shadow output that is /cmd_vel, by flag,
by ``-p``, by a parameters file or by remapping, is refused with one line and exit code 2.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers_models import depth_scene, tiny_model  # noqa: E402
from helpers_ros import ros_environment  # noqa: E402
from sim2real.runtime.ros_image import encode_depth, fill_image_msg  # noqa: E402

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.timeout(240)

FORWARD, TURN = 0.3, 0.7
SHADOW = "/shadow/cmd_vel"
DRIVER_RIGHT, DRIVER_LEFT = (0.05, -0.4), (0.05, 0.4)     # a joystick: creeping while turning
WINDOW_S = 2.0


@pytest.fixture(scope="module")
def ros_env(tmp_path_factory):
    with ros_environment(tmp_path_factory.mktemp("roslog"), domain_base=140) as values:
        yield values


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model"))


def _serve(model, *args: str) -> list[str]:
    return [sys.executable, "-m", "sim2real.runtime.cli", "serve", "--model", str(model), *args]


@pytest.fixture(scope="module")
def node(ros_env, model, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("node") / "node.log"
    command = _serve(model, "--shadow", "--shadow-topic", SHADOW, "--forward-speed", str(FORWARD),
                     "--turn-rate", str(TURN), "--max-angular-speed", str(TURN), "--watchdog-timeout", "0.5",
                     "--diagnostics-period", "0.5", "--shadow-window", str(WINDOW_S), "--shadow-lag", "0.1")
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    process.log_path = log_path
    yield process
    if process.poll() is None:
        process.kill()
        process.wait()


class Driver:
    """The driver and the camera; records everything on /cmd_vel, the shadow topic and /diagnostics."""

    def __init__(self):
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import Twist
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("test_driver", context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.on_cmd_vel: list[tuple[float, float]] = []
        self.shadow: list[tuple[float, float, float]] = []
        self.agreement: list[dict] = []
        self.node.create_subscription(Twist, "/cmd_vel", lambda m: self.on_cmd_vel.append(
            (m.linear.x, m.angular.z)), 50)
        self.node.create_subscription(Twist, SHADOW, lambda m: self.shadow.append(
            (time.monotonic(), m.linear.x, m.angular.z)), 50)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._diagnostics, 10)
        self.cmd_pub = self.node.create_publisher(Twist, "/cmd_vel", 10)
        self.image_pub = self.node.create_publisher(Image, "/camera/depth/image_raw", qos_profile_sensor_data)
        self._twist, self.sent = Twist, 0
        self.image = fill_image_msg(Image(), encode_depth(depth_scene("obstacle_left"), "32FC1"))

    def _diagnostics(self, array) -> None:
        for status in array.status:
            if status.name.endswith("shadow agreement"):
                self.agreement.append({"t": time.monotonic(), "message": status.message,
                                       **{kv.key: kv.value for kv in status.values}})

    def command(self, linear: float, angular: float) -> None:
        msg = self._twist()
        msg.linear.x, msg.angular.z = linear, angular
        self.cmd_pub.publish(msg)
        self.sent += 1

    def run(self, seconds: float, command: tuple[float, float] | None, images: bool, until=None) -> bool:
        """Drive for ``seconds`` (commands at 20 Hz, images at 10 Hz) or until ``until()`` holds."""
        end, tick = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            if until is not None and until():
                return True
            if command is not None:
                self.command(*command)
            if images and tick % 2 == 0:
                self.image_pub.publish(self.image)
            tick += 1
            pause = time.monotonic() + 0.05
            while time.monotonic() < pause:
                self.executor.spin_once(timeout_sec=0.01)
        return until() if until is not None else True

    def foreign_on_cmd_vel(self) -> list[tuple[float, float]]:
        """Messages on /cmd_vel that this driver did not send."""
        return [m for m in self.on_cmd_vel if m not in (DRIVER_RIGHT, DRIVER_LEFT)]

    def close(self) -> None:
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture(scope="module")
def driver(ros_env, node):
    driver = Driver()
    yield driver
    driver.close()


def _log(node) -> str:
    return node.log_path.read_text(errors="replace")


def _latest(driver: Driver, since: float) -> dict | None:
    recent = [a for a in driver.agreement if a["t"] >= since]
    return recent[-1] if recent else None


def test_shadow_node_commands_nothing_and_reports_agreement(node, driver):
    # Before any image: the watchdog's zero Twists, on the shadow topic.
    assert driver.run(60, None, False, until=lambda: any((x, z) == (0.0, 0.0) for _, x, z in driver.shadow)
                      or node.poll() is not None), _log(node)
    assert node.poll() is None, _log(node)
    assert "shadow mode: commanding nothing" in _log(node)

    # An obstacle on the left: the policy turns right, and so does the driver.
    start = time.monotonic()
    agreed = driver.run(30, DRIVER_RIGHT, True, until=lambda: (a := _latest(driver, start + WINDOW_S)) is not None
                        and a["agreement"] == "1.0" and int(a["compared"]) >= 5)
    assert agreed, (driver.agreement[-3:], _log(node)[-2000:])
    assert any((x, z) == pytest.approx((0.0, -TURN)) for t, x, z in driver.shadow if t > start)

    # The driver turns left where the policy turns right: agreement falls to 0 once the window has passed.
    start = time.monotonic()
    disagreed = driver.run(30, DRIVER_LEFT, True, until=lambda: (a := _latest(driver, start + WINDOW_S + 0.5))
                           is not None and a["agreement"] == "0.0")
    assert disagreed, driver.agreement[-3:]
    figures = _latest(driver, start)
    assert figures["driver_left"] == figures["compared"] and figures["teleop_topic"] == "/cmd_vel"
    assert figures["output_topic"] == SHADOW

    # The camera stops: the watchdog's zero Twists go to the shadow topic, never to /cmd_vel.
    stopped = time.monotonic()
    assert driver.run(10, DRIVER_LEFT, False, until=lambda: any(
        t > stopped + 0.5 and (x, z) == (0.0, 0.0) for t, x, z in driver.shadow))

    endpoints = driver.node.get_publishers_info_by_topic("/cmd_vel")
    assert [e.node_name for e in endpoints] == ["test_driver"]
    assert driver.sent > 20 and len(driver.on_cmd_vel) > 20, "this process hears the driver on /cmd_vel"
    assert driver.foreign_on_cmd_vel() == []

    # Shutting down publishes its last zero Twist on the shadow topic too.
    node.send_signal(signal.SIGINT)
    assert node.wait(timeout=30) == 0, _log(node)
    driver.run(1.0, None, False)
    assert "shutting down: published a zero Twist" in _log(node)
    assert driver.foreign_on_cmd_vel() == []


REFUSED = "--shadow publishes nothing the robot obeys"


@pytest.mark.parametrize("args, message", [
    (["--shadow", "--shadow-topic", "/cmd_vel"], REFUSED),
    (["--shadow", "--ros-args", "-p", "shadow_topic:=cmd_vel"], REFUSED),
    (["--shadow", "--teleop-topic", "/joy/cmd_vel", "--shadow-topic", "/joy/cmd_vel"], REFUSED),
    (["--shadow", "--ros-args", "-r", "/sim2real/shadow/cmd_vel:=/cmd_vel"], REFUSED),
    (["--ros-args", "--params-file", "SITE"], REFUSED),
    (["--shadow", "--ros-args", "-p", "shadow:=false"], "--shadow was given but a parameter"),
])
def test_shadow_onto_a_command_topic_is_refused_in_one_line(ros_env, model, tmp_path, args, message):
    site = tmp_path / "site.yaml"
    site.write_text("/**/sim2real_policy:\n  ros__parameters:\n    shadow: true\n    shadow_topic: /cmd_vel\n")
    args = [str(site) if a == "SITE" else a for a in args]
    result = subprocess.run(_serve(model, *args), capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
