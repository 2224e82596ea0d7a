"""Depth images of real camera sizes across processes, through real ROS 2 with the shipped Fast DDS profile.

Three processes, as on the robot: a camera driver stand-in (``helpers_camera.py``: a real frame of the
set where it is present, else a depth image of the same size, 16UC1, sensor-data QoS, at 30 Hz, the robot's profile exported to it as docs/runtime.md says),
``sim2real serve`` (which loads the profile itself) and this test, which only listens to
``/diagnostics``. What is asserted are counts the node reports, not times: at least 99 % of the
frames sent reach the node and are served. Fast DDS's defaults lose most of them at these sizes (a
640×480 16UC1 image does not fit the 512 KB shared-memory segment). The rate diagnostics are checked
too: the node reports the rate at which images arrive, and warns when it is well below the camera's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers_models import tiny_model  # noqa: E402
from helpers_ros import ros_environment  # noqa: E402
from sim2real.runtime.middleware import profile_environment

rclpy = pytest.importorskip("rclpy")

CAMERA = Path(__file__).resolve().parents[1] / "helpers_camera.py"
RATE_HZ = 30.0
COUNT = 300
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def ros_env(tmp_path_factory):
    with ros_environment(tmp_path_factory.mktemp("roslog"), domain_base=20) as values:
        yield values


@pytest.fixture(scope="module")
def node(ros_env, tmp_path_factory):
    model = tiny_model(tmp_path_factory.mktemp("model"))
    log_path = tmp_path_factory.mktemp("node") / "node.log"
    command = [sys.executable, "-m", "sim2real.runtime.cli", "serve", "--model", str(model),
               "--expected-rate", str(RATE_HZ), "--diagnostics-period", "0.5", "--watchdog-timeout", "1.0"]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    process.log_path = log_path
    yield process
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


class Diagnostics:
    """Collects the node's /diagnostics messages as (status level, message, {key: value})."""

    def __init__(self):
        from diagnostic_msgs.msg import DiagnosticArray

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("test_diagnostics_listener", context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.reports: list[tuple[int, str, dict]] = []
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on, 50)

    def _on(self, msg) -> None:
        for status in msg.status:
            if status.name.startswith("sim2real_policy"):
                level = status.level if isinstance(status.level, int) else int.from_bytes(status.level, "little")
                self.reports.append((level, status.message, {kv.key: kv.value for kv in status.values}))

    def spin(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)

    def counts(self) -> tuple[int, int]:
        """(frames received, frames served) in the newest report."""
        values = self.reports[-1][2]
        return int(values["frames_received"]), int(values["frames"])

    def settled(self, timeout: float = 30.0) -> tuple[int, int]:
        """The counts once two consecutive reports agree (the node has handled everything in flight)."""
        end = time.monotonic() + timeout
        previous = None
        while time.monotonic() < end:
            seen = len(self.reports)
            while len(self.reports) == seen and time.monotonic() < end:
                self.executor.spin_once(timeout_sec=0.05)
            current = self.counts()
            if current == previous:
                return current
            previous = current
        raise AssertionError(f"the node's counts did not settle within {timeout:g} s: {self.reports[-2:]}")

    def close(self) -> None:
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture(scope="module")
def diagnostics(node):
    listener = Diagnostics()
    end = time.monotonic() + 120
    while not listener.reports and node.poll() is None and time.monotonic() < end:
        listener.spin(0.2)
    assert listener.reports, f"no diagnostics from the node: {node.log_path.read_text()[-2000:]}"
    yield listener
    listener.close()


def _camera(frame: str, size: tuple[int, int], count: int, rate: float) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(profile_environment(env))           # what the docs tell a camera driver to export
    return subprocess.Popen([sys.executable, str(CAMERA), "--frame", frame, "--size", f"{size[0]}x{size[1]}",
                             "--count", str(count), "--rate", str(rate)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("frame, size", [("rtabmap_robot_lab_a", (640, 480)), ("graspnet_d435_tabletop", (1280, 720))])
def test_real_size_16uc1_frames_at_30_hz_are_served(node, diagnostics, frame, size):
    received_before, served_before = diagnostics.settled()
    start = len(diagnostics.reports)
    camera = _camera(frame, size, COUNT, RATE_HZ)
    while camera.poll() is None:
        diagnostics.spin(0.2)
    out, err = camera.communicate()
    assert camera.returncode == 0, err
    sent = json.loads(out.strip().splitlines()[-1])
    assert (sent["width"], sent["height"]) == size and sent["published"] == COUNT
    received, served = diagnostics.settled()
    assert received - received_before >= 0.99 * COUNT, (received - received_before, node.log_path.read_text()[-3000:])
    assert served - served_before >= 0.99 * COUNT, (served - served_before, node.log_path.read_text()[-3000:])
    rates = [float(values["image_rate_hz"]) for _, _, values in diagnostics.reports[start:]
             if values.get("image_rate_hz")]
    assert max(rates) >= 0.8 * RATE_HZ, rates
    assert node.poll() is None


def test_the_node_warns_when_images_arrive_well_below_the_cameras_rate(node, diagnostics):
    diagnostics.settled()
    start = len(diagnostics.reports)
    camera = _camera("rtabmap_robot_lab_a", (640, 480), 25, 5.0)
    while camera.poll() is None:
        diagnostics.spin(0.2)
    assert camera.returncode == 0, camera.communicate()[1]
    during = diagnostics.reports[start:]
    slow = [(level, message) for level, message, values in during
            if values.get("image_rate_hz") and 2.0 <= float(values["image_rate_hz"]) <= 8.0]
    assert slow, during
    assert all(level == 1 and "well below the camera's 30 Hz" in message for level, message in slow), slow
    log = node.log_path.read_text()
    assert "well below the camera's 30 Hz" in log, log[-2000:]
