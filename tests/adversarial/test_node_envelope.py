"""Root cause 2: the node could command NaN or absurd velocities (cases 29 and 30).

The node's speeds must lie in a safety envelope (``max_linear_speed``, ``max_angular_speed``,
by default the speeds in the model's manifest). Out-of-envelope or non-finite speeds are refused
at start, whichever way they enter: CLI flags, ``--ros-args -p``, a ``--params-file`` and
``sim2real deploy --node-args``. Checked with real `sim2real serve` processes and real rclpy.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from helpers_models import depth_scene, tiny_model
from helpers_ros import ros_environment
from hypothesis import given, settings
from hypothesis import strategies as st
from sim2real.contracts.actions import STOP
from sim2real.runtime.node import DepthToTwist, NodeParams
from sim2real.runtime.ros_image import encode_depth, fill_image_msg

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def ros_env(tmp_path_factory):
    with ros_environment(tmp_path_factory.mktemp("roslog"), domain_base=20) as values:
        yield values


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model"))   # manifest speeds: 0.5 m/s, 0.5 rad/s


class Listener:
    """Counts every Twist on /cmd_vel in this process; publishes depth images."""

    def __init__(self):
        from geometry_msgs.msg import Twist
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import Image

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("envelope_listener", context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.twists: list[tuple[float, float]] = []
        self.node.create_subscription(Twist, "/cmd_vel", lambda m: self.twists.append((m.linear.x, m.angular.z)), 10)
        self.images = self.node.create_publisher(Image, "/camera/depth/image_raw", qos_profile_sensor_data)
        self.open_view = fill_image_msg(Image(), encode_depth(depth_scene("open")))

    def spin_while(self, proc: subprocess.Popen, timeout_s: float, publish: bool = False) -> None:
        end = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < end:
            if publish:
                self.images.publish(self.open_view)
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        self.node.destroy_node()
        self.context.try_shutdown()


@pytest.fixture(scope="module")
def listener(ros_env):
    listener = Listener()
    yield listener
    listener.close()


def serve(model, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "sim2real", "serve", "--model", str(model), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def params_file(path, **values) -> str:
    body = "".join(f"    {key}: {value}\n" for key, value in values.items())
    path.write_text(f"sim2real_policy:\n  ros__parameters:\n{body}")
    return str(path)


@pytest.mark.parametrize("args, message", [
    (["--forward-speed", "nan"], "forward_speed must be a finite number, got nan"),                  # case 29
    (["--forward-speed=-1e9", "--turn-rate=inf"], "turn_rate must be a finite number, got inf"),    # case 30
    (["--forward-speed=-1e9"], "forward_speed -1000000000.0 m/s is outside the safety envelope"),
    (["--ros-args", "-p", "forward_speed:=.nan"], "forward_speed must be a finite number"),
    (["--ros-args", "-p", "turn_rate:=5.0"], "turn_rate 5.0 rad/s is outside the safety envelope (0, 0.5]"),
    (["--params-file"], "forward_speed 2.0 m/s is outside the safety envelope (0, 0.5]"),
    (["--max-linear-speed", "inf"], "max_linear_speed must be a finite number"),
    (["--max-angular-speed", "-1"], "max_angular_speed must be ≥ 0"),
    (["--forward-speed", "0.9", "--max-linear-speed", "0.8"], "forward_speed 0.9 m/s is outside the safety envelope"),
])
def test_out_of_envelope_speeds_never_start_the_node(listener, model, tmp_path, args, message):
    if args == ["--params-file"]:
        args = ["--ros-args", "--params-file", params_file(tmp_path / "params.yaml", forward_speed=2.0)]
    before = len(listener.twists)
    proc = serve(model, *args)
    listener.spin_while(proc, 60, publish=True)
    out, err = proc.communicate(timeout=60)
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("sim2real serve: error: "), err
    assert message in err
    assert len(listener.twists) == before, "a node that refuses its parameters publishes nothing"


def test_speeds_inside_a_raised_envelope_are_served(listener, model):
    proc = serve(model, "--forward-speed", "0.8", "--max-linear-speed", "1.0")
    try:
        end = time.monotonic() + 60
        while (0.8, 0.0) not in listener.twists and time.monotonic() < end and proc.poll() is None:
            listener.spin_while(proc, 0.2, publish=True)
        assert (0.8, 0.0) in listener.twists, proc.stderr.read() if proc.poll() is not None else listener.twists[-5:]
        assert all(np.isfinite(t).all() and abs(t[0]) <= 1.0 and abs(t[1]) <= 0.5 for t in listener.twists)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_deploy_refuses_node_args_outside_the_envelope_before_connecting(model):
    """`deploy --node-args` passed the speeds on; now it refuses them before reaching the device."""
    for node_args in (["--forward-speed", "nan"], ["--ros-args", "-p", "turn_rate:=3.0"]):
        result = subprocess.run([sys.executable, "-m", "sim2real", "deploy", "--host", "ssh://nobody@127.0.0.1:1",
                                 "--model", str(model), "--node-args", *node_args],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "sim2real deploy: error:" in result.stderr and "127.0.0.1" not in result.stderr
        assert "turn_rate" in result.stderr or "forward_speed" in result.stderr


class _Logits:
    """A policy that maps images as the model does and returns whatever logits it is given (garbage included)."""

    def __init__(self, policy):
        self.mapping, self.output = policy.mapping, None

    def infer(self, x):
        return self.output


_SPEED = st.one_of(st.floats(min_value=-10, max_value=10), st.sampled_from([0.0, 0.5, float("nan"), float("inf"),
                                                                               -float("inf"), 1e300]))


@pytest.fixture(scope="module")
def loaded(model):
    from sim2real.runtime.policy import ModelPolicy

    return ModelPolicy(model)


@settings(max_examples=300, deadline=None)
@given(forward=_SPEED, turn=_SPEED, max_linear=_SPEED, max_angular=_SPEED,
       logits=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=0, max_size=5))
def test_speeds_are_refused_or_every_command_is_finite_and_inside_the_envelope(loaded, forward, turn, max_linear,
                                                                               max_angular, logits):
    params = NodeParams(model_path="m", forward_speed=forward, turn_rate=turn, max_linear_speed=max_linear,
                        max_angular_speed=max_angular)
    policy = _Logits(loaded)
    try:
        pipeline = DepthToTwist(policy, params, lambda *_: None)      # no manifest: the contract's 0.5 / 0.5
    except ValueError as exc:
        assert "\n" not in str(exc)
        return
    limit_linear, limit_angular = max_linear or 0.5, max_angular or 0.5
    assert 0 < forward <= limit_linear and 0 < turn <= limit_angular
    policy.output = np.asarray(logits, dtype=np.float32)
    twist = pipeline.handle(encode_depth(depth_scene("open")))
    assert np.isfinite([twist.linear_x, twist.angular_z]).all()
    assert abs(twist.linear_x) <= limit_linear and abs(twist.angular_z) <= limit_angular
    if not (len(logits) == 3 and np.isfinite(policy.output).all()):
        assert twist == STOP


def test_a_command_outside_the_envelope_is_never_returned(loaded):
    """Speeds changed after the check (a bug elsewhere) still cannot leave the node: the command is a stop."""
    logs = []
    policy = _Logits(loaded)
    pipeline = DepthToTwist(policy, NodeParams(model_path="m"), lambda level, message: logs.append(message))
    pipeline.params.forward_speed = float("nan")
    policy.output = np.array([1.0, 0.0, 0.0], np.float32)
    assert pipeline.handle(encode_depth(depth_scene("open"))) == STOP
    assert "outside the safety envelope" in logs[-1]
