"""Contracts: preprocessing, actions, manifests, scenarios."""

import math

import numpy as np
import pytest

from sim2real.contracts import actions
from sim2real.contracts.camera import ray_directions, vfov_deg
from sim2real.contracts.manifest import (new_manifest, read_manifest, sha256_file, write_bytes_atomic,
                                         write_manifest)
from sim2real.contracts.preprocessing import (PreprocessSpec, depth_from_millimetres, depth_to_millimetres,
                                              preprocess, resize_area)
from sim2real.contracts.scenario import ScenarioError, builtin_names, load_scenario, parse_scenario

SPEC = PreprocessSpec(size=32, min_range_m=0.1, max_range_m=5.0)


def test_preprocess_uses_fixed_range_not_image_statistics():
    near_wall = np.full((64, 64), 0.6, np.float32)
    far_wall = np.full((64, 64), 4.0, np.float32)
    near, far = preprocess(near_wall, SPEC), preprocess(far_wall, SPEC)
    assert np.all(np.isfinite(near)) and np.all(np.isfinite(far))
    assert near.mean() == pytest.approx((0.6 - 0.1) / 4.9, abs=1e-5)
    assert far.mean() > near.mean() + 0.5


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 0.0, -1.0])
def test_invalid_pixels_become_invalid_value(bad):
    depth = np.full((32, 32), 2.0, np.float32)
    depth[:, :16] = bad
    out = preprocess(depth, SPEC)
    assert np.all(out[:, :16] == SPEC.invalid_value)
    assert np.allclose(out[:, 16:], (2.0 - 0.1) / 4.9)


def test_preprocess_clips_to_camera_range_and_resizes_any_shape():
    depth = np.array([[0.01, 100.0]] * 3, np.float32)
    out = preprocess(np.repeat(depth, 20, axis=1), PreprocessSpec(size=16))
    assert out.shape == (16, 16) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    with pytest.raises(ValueError, match="2-D"):
        preprocess(np.zeros((2, 2, 2)), SPEC)


def test_area_resize_preserves_mean_and_exact_blocks():
    image = np.arange(64, dtype=np.float32).reshape(8, 8)
    out = resize_area(image, 4, 4)
    assert out[0, 0] == pytest.approx(image[:2, :2].mean())
    assert resize_area(image, 3, 5).mean() == pytest.approx(image.mean(), rel=1e-5)


def test_millimetre_round_trip_marks_invalid_as_zero_and_nan():
    metres = np.array([[1.234, np.nan, 0.0, np.inf]], np.float32)
    mm = depth_to_millimetres(metres)
    assert mm.tolist() == [[1234, 0, 0, 0]]
    back = depth_from_millimetres(mm)
    assert back[0, 0] == pytest.approx(1.234) and np.isnan(back[0, 1:]).all()


def test_preprocess_spec_round_trip_and_rejects_unknown_keys():
    assert PreprocessSpec.from_dict(SPEC.to_dict()) == SPEC
    with pytest.raises(ValueError, match="unknown preprocessing key"):
        PreprocessSpec.from_dict({**SPEC.to_dict(), "mean": 0.5})


def test_action_space_twists():
    assert actions.ACTIONS == ("forward", "left", "right")
    assert actions.twist_for(actions.FORWARD).linear_x > 0
    assert actions.twist_for(actions.LEFT).angular_z > 0 > actions.twist_for(actions.RIGHT).angular_z
    with pytest.raises(ValueError):
        actions.twist_for(3)


def test_camera_rays_are_unit_and_centred():
    rays = ray_directions(8, 6, 90.0)
    assert rays.shape == (6, 8, 3)
    assert np.allclose(np.linalg.norm(rays, axis=-1), 1.0)
    assert rays[0, 0, 1] > 0 and rays[0, 0, 2] > 0, "row 0 is the top, column 0 the left"
    assert vfov_deg(8, 8, 90.0) == pytest.approx(90.0)
    left_edge = math.degrees(math.atan2(rays[3, 0, 1], rays[3, 0, 0]))
    assert 40 < left_edge < 45


def test_manifest_records_sha_and_detects_tampering(tmp_path):
    artifact = tmp_path / "model.onnx"
    write_bytes_atomic(artifact, b"weights")
    write_manifest(artifact, new_manifest("onnx-model", inputs={"checkpoint": "ab" * 32}))
    manifest = read_manifest(artifact)
    assert manifest["sha256"] == sha256_file(artifact)
    assert manifest["inputs"]["checkpoint"] == "ab" * 32
    artifact.write_bytes(b"weight")
    with pytest.raises(ValueError, match="does not match its manifest"):
        read_manifest(artifact)
    assert not list(tmp_path.glob("*.tmp")), "atomic writes leave no temp files"


def test_builtin_scenarios_load_and_hash_stably():
    assert {"default", "tiny"} <= set(builtin_names())
    first, second = load_scenario("default"), load_scenario("default")
    assert first.sha256() == second.sha256()
    assert first.sha256() != load_scenario("tiny").sha256()


def test_user_file_works_where_a_name_does(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\narena:\n  size_m: [5, 5]\n")
    assert load_scenario(path).arena.size_m == (5.0, 5.0)


@pytest.mark.parametrize("data, key", [
    ({"name": "x", "camera": {"widht": 64}}, "camera.widht"),
    ({"name": "x", "camera": {"width": 3}}, "camera.width"),
    ({"name": "x", "obstacles": {"count": [5, 2]}}, "obstacles"),
    ({"name": "x", "bogus": 1}, "bogus"),
])
def test_bad_scenario_values_name_their_key(data, key):
    with pytest.raises(ScenarioError, match=key):
        parse_scenario(data, "test.yaml")


def test_unknown_scenario_name_lists_builtins():
    with pytest.raises(ScenarioError, match="built-ins: .*default"):
        load_scenario("no-such-scenario")


def test_atomic_writes_are_readable_by_others(tmp_path):
    path = tmp_path / "report.json"
    write_bytes_atomic(path, b"{}")
    assert path.stat().st_mode & 0o044, "mkstemp's owner-only mode must not leak into artifacts"
