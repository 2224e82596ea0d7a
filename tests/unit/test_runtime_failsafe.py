"""The node's ROS-free core: image → Twist with the fail-safe, log-once behaviour, latency stats."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from helpers_models import EXPECTED_ACTION, depth_scene, tiny_model  # noqa: E402
from sim2real.contracts.actions import STOP, twist_for  # noqa: E402
from sim2real.runtime.node import DepthToTwist, LatencyStats, NodeParams  # noqa: E402
from sim2real.runtime.policy import ModelPolicy  # noqa: E402
from sim2real.runtime.ros_image import encode_depth  # noqa: E402
from sim2real.runtime.watchdog import FailSafe  # noqa: E402


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    return ModelPolicy(tiny_model(tmp_path_factory.mktemp("tiny")))


def _pipeline(policy, **params):
    logs = []
    pipeline = DepthToTwist(policy, NodeParams(model_path="m", **params), lambda level, msg: logs.append((level, msg)))
    return pipeline, logs


@pytest.mark.parametrize("scene", sorted(EXPECTED_ACTION))
@pytest.mark.parametrize("encoding", ["32FC1", "16UC1"])
def test_valid_images_give_the_models_action(policy, scene, encoding):
    pipeline, _ = _pipeline(policy, forward_speed=0.3, turn_rate=0.7, max_angular_speed=0.7)
    twist = pipeline.handle(encode_depth(depth_scene(scene, 60, 80), encoding, big_endian=True, row_padding=4))
    assert twist == twist_for(EXPECTED_ACTION[scene], 0.3, 0.7)
    assert pipeline.last_action == EXPECTED_ACTION[scene]
    assert set(pipeline.last_timing_ms) == {"convert", "preprocess", "infer"}


def test_unusable_images_stop_and_are_logged_once(policy):
    pipeline, logs = _pipeline(policy)
    invalid = encode_depth(depth_scene("invalid"))
    for _ in range(5):
        assert pipeline.handle(invalid) == STOP
    wrong = encode_depth(depth_scene("open")).__dict__ | {"encoding": "rgb8"}
    for _ in range(3):
        assert pipeline.handle(type("Msg", (), wrong)) == STOP
    warnings = [msg for level, msg in logs if level == "warn" and not msg.startswith("camera:")]
    assert warnings == ["publishing zero Twist: unusable image: more than 50% of the pixels the model sees hold "
                        "no return",
                        "publishing zero Twist: unusable image: encoding 'rgb8' is not a depth encoding "
                        "(expected one of 32FC1, 16UC1)"]
    assert pipeline.handle(encode_depth(depth_scene("obstacle_left"))) == twist_for(EXPECTED_ACTION["obstacle_left"])
    assert logs[-1][0] == "info" and logs[-1][1].startswith("serving after") and "8 image(s) refused" in logs[-1][1]


def test_size_mismatch_is_refused_when_a_size_is_expected(policy):
    pipeline, logs = _pipeline(policy, expected_width=64, expected_height=48)
    assert pipeline.handle(encode_depth(depth_scene("open", 48, 64))) != STOP
    assert pipeline.handle(encode_depth(depth_scene("open", 50, 64))) == STOP
    assert "size 64x50 differs from the expected 64x48" in logs[-1][1]


class _Failing:
    def __init__(self, policy, output=None):
        self.mapping, self.output = policy.mapping, output

    def infer(self, x):
        if self.output is None:
            raise RuntimeError("CUDA error: device lost")
        return self.output


@pytest.mark.parametrize("output, reason", [
    (None, "inference failed: RuntimeError: CUDA error: device lost"),
    (np.array([np.nan, 0.0, 1.0]), "is not 3 finite logits"),
    (np.zeros(4), "is not 3 finite logits"),
])
def test_inference_errors_stop_the_robot(policy, output, reason):
    pipeline, logs = _pipeline(_Failing(policy, output))
    for _ in range(3):
        assert pipeline.handle(encode_depth(depth_scene("open"))) == STOP
    stops = [msg for _, msg in logs if not msg.startswith("camera:")]
    assert len(stops) == 1 and reason in stops[0]


def test_watchdog_stops_when_no_valid_image_within_timeout():
    clock, logs = Clock(), []
    failsafe = FailSafe(0.25, lambda level, msg: logs.append(msg), clock=clock)
    assert failsafe.stale() and failsafe.stopped
    assert logs == ["publishing zero Twist: no valid depth image received yet"]
    failsafe.valid()
    assert not failsafe.stopped and logs[-1] == "first valid depth image after 0.00 s: serving"
    clock.now += 0.2
    assert not failsafe.stale()
    clock.now += 0.1
    for _ in range(10):
        assert failsafe.stale()
    assert logs[-1] == "publishing zero Twist: no valid depth image for more than 0.25 s"
    assert len(logs) == 3 and failsafe.stops == 1
    clock.now += 0.2
    failsafe.valid()
    assert not failsafe.stale() and failsafe.reason is None
    assert logs[-1] == ("serving again after 0.20 s stopped (0 image(s) refused; "
                        "reasons: no valid depth image for more than 0.25 s)")


def test_distinct_reasons_are_capped_per_stop_episode():
    logs = []
    failsafe = FailSafe(1.0, lambda level, msg: logs.append(msg))
    for index in range(20):
        failsafe.fault(f"reason {index}")
    assert len(logs) == 6 and "further reasons" in logs[-1]


def test_invalid_parameters_are_refused():
    with pytest.raises(ValueError, match="timeout"):
        FailSafe(0.0, print)
    for params, match in ((NodeParams(), "no model"), (NodeParams(model_path="m", max_invalid_fraction=1.5), "within"),
                          (NodeParams(model_path="m", cmd_vel_topic=""), "cmd_vel_topic")):
        with pytest.raises(ValueError, match=match):
            params.validate()


def test_latency_stats_percentiles_and_log_line():
    stats = LatencyStats(stages=("infer", "total"), window=100)
    assert "no frames yet" in stats.line()
    for value in range(1, 201):
        stats.add({"infer": float(value), "total": 2.0 * value})
    summary = stats.summary()
    assert stats.frames == 200 and summary["infer"]["n"] == 100
    assert summary["infer"]["p50"] == pytest.approx(150.5) and summary["total"]["max"] == 400.0
    assert stats.line().startswith("latency ms p50/p99 over last 100 frames: infer 150.50/")


def test_robot_side_modules_import_no_ros_or_torch():
    code = ("import sys, sim2real.runtime.node, sim2real.runtime.ros_image, sim2real.runtime.replay, "
            "sim2real.runtime.cli, sim2real.runtime.watchdog, sim2real.runtime.engines.tensorrt_engine; "
            "print(','.join(sorted(sys.modules)))")
    modules = {m.split(".")[0] for m in subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                                        text=True).stdout.strip().split(",")}
    assert not modules & {"torch", "rclpy", "mujoco", "pybullet", "rosbags", "tensorrt"}


def test_cli_flags_and_ros_args_reach_the_node():
    import argparse

    from sim2real.runtime.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="verb"))
    args = parser.parse_args(["serve", "--model", "m.onnx", "--turn-rate", "0.3", "--watchdog-timeout", "0.1",
                              "--ros-args", "-r", "/cmd_vel:=/base/cmd_vel", "-p", "forward_speed:=0.2"])
    assert (args.model, args.turn_rate, args.watchdog_timeout, args.forward_speed) == ("m.onnx", 0.3, 0.1, None)
    assert args.ros_args == ["-r", "/cmd_vel:=/base/cmd_vel", "-p", "forward_speed:=0.2"]
    args = parser.parse_args(["replay", "--bag", "b.mcap"])
    assert args.model.endswith("latest/model/model.int8.onnx") and args.topic == "/camera/depth/image_raw"
