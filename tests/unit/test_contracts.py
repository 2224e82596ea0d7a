"""Contracts: preprocessing, actions, manifests, scenarios."""

import math

import numpy as np
import pytest

from sim2real.contracts import actions
from sim2real.contracts.camera import CameraContract, Intrinsics, ray_directions, vfov_deg
from sim2real.contracts.manifest import (new_manifest, read_manifest, sha256_file, write_bytes_atomic,
                                         write_manifest)
from sim2real.contracts.preprocessing import (TOO_FAR, TOO_NEAR, VALID, PreprocessSpec, depth_from_millimetres,
                                              depth_to_millimetres, pixel_states, preprocess)
from sim2real.contracts.scenario import ScenarioError, builtin_names, load_scenario, parse_scenario

SPEC = PreprocessSpec(width=32, height=18, min_range_m=0.1, max_range_m=5.0)
CAMERA = CameraContract.for_camera(224, 126, 87.0, "d435")


def test_preprocess_uses_fixed_range_not_image_statistics():
    near_wall = np.full((126, 224), 0.6, np.float32)
    far_wall = np.full((126, 224), 4.0, np.float32)
    near, far = preprocess(near_wall, SPEC, CAMERA), preprocess(far_wall, SPEC, CAMERA)
    assert near.shape == far.shape == (2, 18, 32)
    assert np.allclose(near[0], (0.6 - 0.1) / 4.9, atol=1e-6) and np.all(near[1] == 1.0)
    assert far[0].mean() > near[0].mean() + 0.5


@pytest.mark.parametrize("bad", [np.nan, 0.0, -1.0])
def test_no_return_pixels_are_no_data_never_a_depth(bad):
    depth = np.full((126, 224), 2.0, np.float32)
    depth[:, :112] = bad
    out = preprocess(depth, SPEC, CAMERA)
    assert np.all(out[:, :, :16] == 0.0), "no data: validity 0 and depth channel 0"
    assert np.allclose(out[0, :, 16:], (2.0 - 0.1) / 4.9) and np.all(out[1, :, 16:] == 1.0)


def test_too_far_and_too_near_are_measurements():
    depth = np.array([[0.01, 100.0, np.inf, -np.inf, 0.1, 5.0]], np.float32).repeat(4, axis=0)
    states = pixel_states(depth, SPEC)
    assert states[0].tolist() == [TOO_NEAR, TOO_FAR, TOO_FAR, TOO_NEAR, VALID, VALID]
    wide = np.repeat(depth, 40, axis=1)
    out = preprocess(wide, PreprocessSpec(width=16, height=16), CameraContract.for_camera(240, 4, 87.0),
                     Intrinsics.from_fov(240, 4, 87.0, CameraContract.for_camera(240, 4, 87.0).vfov_deg))
    assert out.shape == (2, 16, 16) and np.all(out[1] == 1.0), "every pixel holds a return"
    assert out[0].min() >= 0.0 and out[0].max() <= 1.0


def test_millimetre_round_trip_keeps_each_pixel_state():
    metres = np.array([[1.234, np.nan, 0.0, np.inf, -np.inf, 70.0, 0.0001]], np.float32)
    mm = depth_to_millimetres(metres)
    assert mm.tolist() == [[1234, 0, 0, 65535, 1, 65535, 1]]
    back = depth_from_millimetres(mm)
    assert back[0, 0] == pytest.approx(1.234) and np.isnan(back[0, 1:3]).all()
    spec = PreprocessSpec(width=16, height=16)
    np.testing.assert_array_equal(pixel_states(back, spec), pixel_states(metres, spec))
    # Rounded to the nearest millimetre: float32 19.3145 is 19.31450080..., 19315 mm (not a float32 tie).
    assert depth_to_millimetres(np.array([19.3145], np.float32)).tolist() == [19315]


def test_preprocess_spec_round_trip_and_rejects_unknown_keys_and_bad_values():
    assert PreprocessSpec.from_dict(SPEC.to_dict()) == SPEC
    with pytest.raises(ValueError, match="unknown preprocessing key"):
        PreprocessSpec.from_dict({**SPEC.to_dict(), "mean": 0.5})
    with pytest.raises(ValueError, match="width must be a whole number"):
        PreprocessSpec.from_dict({**SPEC.to_dict(), "width": 96.5})
    with pytest.raises(ValueError, match="version 1 .*retrain and re-export"):
        PreprocessSpec.from_dict({"size": 96, "min_range_m": 0.1, "max_range_m": 5.0, "invalid_value": 0.0,
                                  "version": 1})


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
    ({"name": "x", "randomization": {"max_range_m": [4.0, 5.0]}}, "randomization.max_range_m"),
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
