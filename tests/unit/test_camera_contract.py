"""One contract from the simulator to the sensor on the robot: pixel states, camera mapping, mirror.

- The same scene, rendered once to raw metres, reaches the model as the same tensor through the
  datagen path (millimetres in a shard, the trainer's preprocessing) and through the robot path
  (a 16UC1 or 32FC1 sensor_msgs/Image with its CameraInfo, through the node's own pipeline).
- Any camera is mapped onto the trained field of view by its intrinsics: angles are kept (never
  squashed), a wider image is cropped, a narrower one leaves a no-data border, and one that covers
  too little is refused with one log line and a zero Twist.
- The whole path from a raw image to the command is mirror-exact; an exact tie is LEFT and reported.
"""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest
from helpers_models import EXPECTED_ACTION, camera_info, contract_model, depth_scene, tiny_model
from sim2real.contracts.actions import LEFT, MIRROR, RIGHT, STOP, twist_for
from sim2real.contracts.camera import CameraContract, CameraError, Intrinsics
from sim2real.contracts.dataset import MANIFEST, Dataset, shard_name, write_shard
from sim2real.contracts.preprocessing import PreprocessSpec, depth_to_millimetres, input_mapping, preprocess
from sim2real.contracts.scenario import load_scenario
from sim2real.runtime.node import CameraSource, DepthToTwist, NodeParams
from sim2real.runtime.policy import ModelPolicy
from sim2real.runtime.ros_image import encode_depth

D435 = CameraContract.for_camera(224, 126, 87.0, "RealSense D435 depth")
SPEC = PreprocessSpec(width=128, height=72, min_range_m=0.1, max_range_m=5.0)


class Recording:
    """A ModelPolicy that remembers the model input it was given."""

    def __init__(self, policy: ModelPolicy):
        self.policy, self.inputs = policy, []
        self.mapping, self.camera = policy.mapping, policy.camera

    def infer(self, x):
        self.inputs.append(x[0].copy())
        return self.policy.infer(x)


def _pipeline(policy, params: NodeParams | None = None):
    logs = []
    pipeline = DepthToTwist(policy, params or NodeParams(model_path="m"), lambda level, msg: logs.append((level, msg)))
    return pipeline, logs


@pytest.fixture(scope="module")
def d435_policy(tmp_path_factory):
    return ModelPolicy(contract_model(tmp_path_factory.mktemp("d435"), SPEC, D435))


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    return ModelPolicy(tiny_model(tmp_path_factory.mktemp("tiny")))


def test_one_scene_reaches_the_model_identically_through_datagen_and_through_the_robot(d435_policy, tmp_path):
    pytest.importorskip("mujoco")
    from sim2real.sim.mujoco_backend import MujocoBackend
    from sim2real.sim.world import sample_camera, sample_free_pose, sample_world
    from sim2real.train.trainer import preprocess_millimetres, spec_for

    scenario = load_scenario("default")
    cam = scenario.camera
    rng = np.random.default_rng(12)
    backend = MujocoBackend(scenario)
    world = sample_world(scenario, rng)
    backend.load(world)
    scenes = []
    for _ in range(6):                     # cameras of every field of view and aspect datagen draws
        camera = sample_camera(scenario, rng)
        metres = backend.render_depth(sample_free_pose(world, 0.3, rng), camera, rng)
        scenes.append((metres, camera.intrinsics(cam)))
    backend.close()
    assert any(np.nanmax(m) > cam.max_range_m for m, _ in scenes), "the scenes hold too-far readings"

    # The datagen path: millimetres in a shard (padded to the camera's pixels), read back, preprocessed.
    depth_mm = np.zeros((len(scenes), cam.height, cam.width), np.uint16)
    rows = np.array([k.to_list() for _, k in scenes])
    for i, (metres, k) in enumerate(scenes):
        depth_mm[i, :k.height, :k.width] = depth_to_millimetres(metres)
    sha = write_shard(tmp_path / shard_name(0), depth_mm, np.zeros(len(scenes), np.uint8), rows)
    (tmp_path / MANIFEST).write_text(json.dumps({
        "format_version": 2, "count": len(scenes), "shards": [{"file": shard_name(0), "count": len(scenes),
                                                               "sha256": sha}],
        "camera": {"name": cam.name, "width": cam.width, "height": cam.height, "hfov_deg": cam.hfov_deg,
                   "min_range_m": cam.min_range_m, "max_range_m": cam.max_range_m}}))
    dataset = Dataset(tmp_path)
    spec, contract = spec_for(dataset, 128)
    assert (spec, contract) == (d435_policy.spec, d435_policy.camera)
    stored_mm, _, stored_rows = dataset.load()
    from_datagen = preprocess_millimetres(stored_mm, stored_rows, spec, contract)

    # The robot path: the raw image as a driver publishes it, with its CameraInfo, through the node.
    for encoding in ("16UC1", "32FC1"):
        recording = Recording(d435_policy)
        pipeline, _ = _pipeline(recording, NodeParams(model_path="m", max_invalid_fraction=1.0))
        for metres, k in scenes:
            pipeline.camera.update(camera_info(k))
            pipeline.handle(encode_depth(metres, encoding))
        assert len(recording.inputs) == len(scenes)
        for robot, datagen in zip(recording.inputs, from_datagen):
            np.testing.assert_array_equal(robot[1], datagen[1])                  # validity: identical
            if encoding == "16UC1":
                np.testing.assert_array_equal(robot, datagen)                   # the same bytes: identical
            else:                                                                # up to half a millimetre
                assert np.abs(robot[0] - datagen[0]).max() <= 0.0005 / (5.0 - 0.1) + 1e-6


def test_camera_info_gives_the_intrinsics_of_the_published_image():
    k = Intrinsics(640, 480, 385.0, 386.0, 321.5, 238.0)
    assert Intrinsics.from_camera_info(camera_info(k)) == k
    binned = Intrinsics.from_camera_info(camera_info(k, binning=2))
    assert (binned.width, binned.height, binned.fx, binned.cx) == (320, 240, 192.5, 160.5)
    roi = SimpleNamespace(x_offset=100, y_offset=40, width=400, height=300)
    cut = Intrinsics.from_camera_info(camera_info(k, roi=roi))
    assert (cut.width, cut.height, cut.cx, cut.cy) == (400, 300, 221.5, 198.0)
    with pytest.raises(CameraError, match="uncalibrated"):
        Intrinsics.from_camera_info(SimpleNamespace(width=640, height=480, k=[0.0] * 9))


@pytest.mark.parametrize("intrinsics", [
    Intrinsics.from_fov(640, 480, 58.0),                         # Kinect / Xtion: narrower, 4:3
    Intrinsics.from_fov(1280, 720, 90.0),                        # ZED-like: wider, 16:9
    Intrinsics.from_fov(224, 126, 87.0),                         # the trained D435
    Intrinsics(320, 240, 300.0, 330.0, 171.0, 112.0),            # non-square pixels, off-centre
], ids=["640x480@58", "1280x720@90", "224x126@87", "320x240-anamorphic"])
def test_angles_are_kept_whatever_the_camera_never_squashed(intrinsics):
    """A near patch 10-20° left of the axis and 5-15° up lands on the same input pixels for every camera."""
    u = np.arange(intrinsics.width)
    v = np.arange(intrinsics.height)
    left = np.degrees(np.arctan((intrinsics.cx - u) / intrinsics.fx))
    up = np.degrees(np.arctan((intrinsics.cy - v) / intrinsics.fy))
    depth = np.full((intrinsics.height, intrinsics.width), 4.0, np.float32)
    depth[np.ix_((up > 5) & (up < 15), (left > 10) & (left < 20))] = 0.5
    x = preprocess(depth, SPEC, D435, intrinsics)
    near = (x[0] < 0.5) & (x[1] > 0.99)
    rows, cols = np.nonzero(near)
    tan_x, tan_y = D435.tan_half()

    def col(deg):                                # input column of a horizontal angle (left positive)
        return SPEC.width / 2 * (1 - math.tan(math.radians(deg)) / tan_x)

    def row(deg):
        return SPEC.height / 2 * (1 - math.tan(math.radians(deg)) / tan_y)

    assert col(20) - 1 <= cols.min() and cols.max() <= col(10) + 1
    assert row(15) - 1 <= rows.min() and rows.max() <= row(5) + 1
    assert near.sum() >= 0.7 * (col(10) - col(20)) * (row(5) - row(15))


def test_a_wider_image_is_cropped_and_a_narrower_one_gets_a_no_data_border():
    wide = input_mapping(SPEC, D435, Intrinsics.from_fov(1280, 720, 90.0))
    x, no_return = wide(np.full((720, 1280), 2.0, np.float32))
    assert wide.coverage == (1.0, 1.0) and np.all(x[1] == 1.0) and no_return == 0.0
    assert wide.window[1].start > 0 and wide.window[1].stop < 1280, "only the columns the model sees are read"
    narrow = input_mapping(SPEC, D435, Intrinsics.from_fov(640, 480, 58.0))
    x, _ = narrow(np.full((480, 640), 2.0, np.float32))
    assert narrow.coverage[0] == pytest.approx(math.tan(math.radians(29)) / math.tan(math.radians(43.5)))
    assert np.all(x[:, :, :20] == 0.0) and np.all(x[:, :, -20:] == 0.0), "the uncovered sides are no data"
    assert np.all(x[1, 10:-10, 30:-30] == 1.0) and np.allclose(x[0, 10:-10, 30:-30], (2.0 - 0.1) / 4.9)
    narrow.check()                                # a Kinect covers more than half of the D435's view


def test_a_camera_below_the_minimum_overlap_is_refused_with_one_line_and_a_zero_twist(tiny_policy):
    pipeline, logs = _pipeline(tiny_policy)
    pipeline.camera.update(camera_info(Intrinsics.from_fov(64, 48, 30.0)))
    for _ in range(3):
        assert pipeline.handle(encode_depth(depth_scene("open"))) == STOP
    refusals = [msg for level, msg in logs if level == "warn" and "zero Twist" in msg]
    assert len(refusals) == 1
    assert re.search(r"covers 28% x 28% of the model's 87°x71° field of view, below the 50% per axis", refusals[0])


def test_intrinsics_that_do_not_describe_the_image_are_refused(tiny_policy):
    pipeline, logs = _pipeline(tiny_policy)
    pipeline.camera.update(camera_info(Intrinsics.from_fov(640, 480, 87.0)))
    assert pipeline.handle(encode_depth(depth_scene("open"))) == STOP
    assert "the image is 64x48 but the camera's intrinsics (camera_info) are for 640x480" in pipeline.last_reason
    params = NodeParams(model_path="m", camera_width=64, camera_height=48, camera_fx=33.7, camera_fy=33.7,
                        camera_cx=31.5, camera_cy=23.5)
    pipeline, _ = _pipeline(tiny_policy, params)
    pipeline.camera.update(camera_info(Intrinsics.from_fov(64, 48, 30.0)))   # the parameters win over it
    assert pipeline.handle(encode_depth(depth_scene("obstacle_left"))) == twist_for(RIGHT)
    assert pipeline.camera.source == "parameters"
    with pytest.raises(ValueError, match="must all be set"):
        NodeParams(model_path="m", camera_fx=300.0).validate()


def test_too_far_and_too_near_are_measurements_not_refusals(tiny_policy):
    pipeline, _ = _pipeline(tiny_policy)
    depth = np.full((48, 64), 8.0, np.float32)                # beyond the 5 m range: free space
    depth[:, :32] = 0.05                                      # below the 0.1 m minimum: an obstacle
    for encoding in ("32FC1", "16UC1"):
        assert pipeline.handle(encode_depth(depth, encoding)) == twist_for(RIGHT)
    depth[:, 32:] = np.inf                                    # REP 117: +inf is "no return, likely free"
    assert pipeline.handle(encode_depth(depth, "32FC1")) == twist_for(RIGHT)
    holes = np.full((48, 64), 2.0, np.float32)
    holes[:, :40] = np.nan
    assert pipeline.handle(encode_depth(holes)) == STOP and "hold no return" in pipeline.last_reason


def test_an_exact_left_right_tie_is_left_and_reported(tiny_policy):
    pipeline, _ = _pipeline(tiny_policy)
    wall = np.full((48, 64), 0.4, np.float32)                # a wall square ahead: its own mirror image
    assert pipeline.handle(encode_depth(wall)) == twist_for(LEFT) and pipeline.last_tie
    assert pipeline.last_logits[LEFT] == pipeline.last_logits[RIGHT]
    assert pipeline.handle(encode_depth(depth_scene("obstacle_left"))) == twist_for(RIGHT)
    assert not pipeline.last_tie


def test_the_path_from_a_raw_image_to_the_command_is_mirror_exact(tiny_policy):
    """A raw frame flipped left-right, with its mirrored CameraInfo, gives exactly the mirrored logits."""
    rng = np.random.default_rng(3)
    for index in range(20):
        k = Intrinsics(160, 120, rng.uniform(70, 140), rng.uniform(70, 140), 79.5 + rng.normal(0, 4),
                       59.5 + rng.normal(0, 4))
        depth = rng.uniform(0.05, 7.0, (120, 160)).astype(np.float32)
        depth[rng.random(depth.shape) < 0.1] = np.nan
        depth[:, : int(rng.integers(10, 80))] *= 0.3
        results = []
        for image, intrinsics in ((depth, k), (np.ascontiguousarray(depth[:, ::-1]), k.mirrored())):
            pipeline, _ = _pipeline(tiny_policy)
            pipeline.camera.update(camera_info(intrinsics))
            twist = pipeline.handle(encode_depth(image, "16UC1" if index % 2 else "32FC1"))
            results.append((twist, pipeline.last_logits))
        (twist, logits), (mirrored_twist, mirrored_logits) = results
        np.testing.assert_array_equal(mirrored_logits, logits[list(MIRROR)])
        assert mirrored_twist.angular_z == -twist.angular_z and mirrored_twist.linear_x == twist.linear_x


@pytest.mark.parametrize("scene", sorted(EXPECTED_ACTION))
def test_without_intrinsics_the_trained_view_is_assumed_and_said_once(tiny_policy, scene):
    pipeline, logs = _pipeline(tiny_policy)
    for _ in range(2):
        assert pipeline.handle(encode_depth(depth_scene(scene, 96, 128))) == twist_for(EXPECTED_ACTION[scene])
    said = [msg for _, msg in logs if msg.startswith("camera:")]
    assert said == ["camera: no CameraInfo and no camera_* parameters: taking the 128x96 images to be 87° wide, "
                    "centred, square pixels (they cover 100% x 100% of the model's 87°x71° view)"]
    assert isinstance(pipeline.camera, CameraSource) and pipeline.camera.source == "assumed"
