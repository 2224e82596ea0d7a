"""Depth sensor models: each model's statistics on synthetic depth images (numpy only, no simulator)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from sim2real.contracts.camera import camera_rotation, ray_directions
from sim2real.contracts.scenario import Camera
from sim2real.sim.sensors import (apply_sensor_model, edge_mask, encode_depth, focal_px, quantize,
                                  shadow_mask)
from sim2real.sim.world import CameraSample

CAMERA = Camera(width=200, height=200, min_range_m=0.1, max_range_m=5.0)
OFF = CameraSample(0.25, 0.0, 87.0, 0.0, 0.0)


def model(**changes) -> CameraSample:
    return dataclasses.replace(OFF, **changes)


def flat(z: float, size: int = 200) -> np.ndarray:
    return np.full((size, size), z, dtype=np.float32)


def step_image(z_near: float, z_far: float, cols: slice, size: int = 200) -> np.ndarray:
    """A far background with a near block over ``cols`` (all rows)."""
    image = flat(z_far, size)
    image[:, cols] = z_near
    return image


def test_all_models_off_is_the_ideal_image_and_draws_nothing():
    ideal = np.linspace(0.5, 4.5, 200 * 200, dtype=np.float32).reshape(200, 200)
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    np.testing.assert_array_equal(apply_sensor_model(ideal, CAMERA, OFF, rng), ideal)
    assert rng.bit_generator.state == state


@pytest.mark.parametrize("z", [1.0, 2.0, 4.0])
def test_stereo_noise_std_grows_with_distance_squared(z):
    k = 0.004
    noisy = apply_sensor_model(flat(z, 400), CAMERA, model(stereo_sigma_per_m2=k), np.random.default_rng(1))
    error = noisy[np.isfinite(noisy)] - z
    assert error.std() == pytest.approx(k * z * z, rel=0.03)
    assert abs(error.mean()) < 4 * k * z * z / math.sqrt(error.size)   # unbiased


@pytest.mark.parametrize("p", [0.01, 0.2])
def test_dropout_invalidates_that_fraction_anywhere(p):
    out = apply_sensor_model(flat(2.0, 400), CAMERA, model(dropout=p), np.random.default_rng(2))
    fraction = np.isnan(out).mean()
    assert fraction == pytest.approx(p, abs=4 * math.sqrt(p * (1 - p) / out.size))
    # Independent of place: each image quarter loses about the same share.
    quarters = [np.isnan(q).mean() for q in (out[:200, :200], out[:200, 200:], out[200:, :200], out[200:, 200:])]
    assert max(quarters) - min(quarters) < 0.02 + p / 5


def test_edge_holes_fall_only_on_depth_edges_at_their_rate():
    image = step_image(1.0, 3.0, slice(80, 120))
    edges = edge_mask(image, 0.1)
    assert set(np.flatnonzero(edges.any(axis=0))) == {79, 80, 119, 120}   # both sides of each step
    out = apply_sensor_model(image, CAMERA, model(edge_hole_prob=0.3), np.random.default_rng(3))
    holes = np.isnan(out)
    assert not holes[~edges].any()
    assert holes[edges].mean() == pytest.approx(0.3, abs=0.05)
    assert np.isnan(apply_sensor_model(image, CAMERA, model(edge_hole_prob=1.0), np.random.default_rng(0))[edges]).all()


def test_edge_threshold_scales_with_distance_squared():
    """A 0.3 m step is an edge at 1 m but not at 4 m (where stereo cannot resolve it either),
    so the far floor at grazing angles does not turn into holes."""
    assert edge_mask(step_image(1.0, 1.3, slice(50, 100)), 0.1).any()
    assert not edge_mask(step_image(4.0, 4.3, slice(50, 100)), 0.1).any()
    # The z-depth of a flat floor seen by the default camera (25 cm up, pitched down 10 degrees).
    rays = ray_directions(200, 200, 87.0)
    down = (rays @ camera_rotation(0.0, math.radians(10.0)).T)[..., 2]
    with np.errstate(divide="ignore"):
        floor = np.where(down < 0, 0.25 / -down * rays[..., 0], np.nan).astype(np.float32)
    floor[floor > 5.0] = np.nan
    assert np.isfinite(floor).mean() > 0.4
    assert not edge_mask(floor, 0.1)[np.isfinite(floor)][200:].any()   # the first valid row borders "nothing"


def test_nothing_hit_counts_as_far_for_edges():
    image = flat(np.nan)
    image[:, 100:] = 2.0
    assert edge_mask(image, 0.1)[:, 100].all() and not edge_mask(image, 0.1)[:, :100].any()


@pytest.mark.parametrize("z_near, z_far, baseline", [(1.0, 3.0, 0.05), (0.6, 4.0, 0.03), (2.0, 2.5, 0.05)])
def test_stereo_shadow_is_a_band_left_of_near_objects_as_wide_as_the_disparity_step(z_near, z_far, baseline):
    image = step_image(z_near, z_far, slice(120, 150))
    fx = focal_px(200, 87.0)
    shadow = shadow_mask(image, fx, baseline)
    # Background pixel u is hidden from the right imager when u - d_far >= 120 - d_near.
    width = fx * baseline * (1 / z_near - 1 / z_far)
    cols = np.flatnonzero(shadow.any(axis=0))
    assert len(cols) == pytest.approx(math.floor(width), abs=1)
    if len(cols):
        assert cols.max() == 119 and np.array_equal(cols, np.arange(cols.min(), 120)), "a band touching the edge"
        assert shadow[:, cols].all(), "every row shadowed alike"
    assert not shadow[:, 120:].any(), "the near object itself and everything right of it stay valid"
    out = apply_sensor_model(image, CAMERA, model(shadow_baseline_m=baseline, hfov_deg=87.0),
                             np.random.default_rng(0))
    np.testing.assert_array_equal(np.isnan(out), shadow)


def test_a_surface_seen_by_both_imagers_has_no_shadow():
    ramp = np.repeat(np.linspace(1.0, 4.0, 200, dtype=np.float32)[None, :], 50, axis=0)   # a receding wall
    assert not shadow_mask(ramp, focal_px(200, 87.0), 0.05).any()
    assert not shadow_mask(flat(2.0), focal_px(200, 87.0), 0.05).any()


@pytest.mark.parametrize("step", [0.001, 0.01])
def test_depth_quantisation_rounds_to_the_step(step):
    ideal = np.linspace(0.5, 4.5, 10000, dtype=np.float32).reshape(100, 100)
    out = quantize(ideal, step, "depth")
    assert np.abs(out - ideal).max() <= step / 2 + 1e-5
    np.testing.assert_allclose(out / step, np.round(out / step), atol=1e-3)


def test_disparity_quantisation_step_grows_with_distance_squared():
    q = 0.006
    for z in (1.0, 2.0, 4.0):
        ideal = np.linspace(z * 0.95, z * 1.05, 20000, dtype=np.float32)
        out = quantize(ideal, q, "disparity")
        levels = np.unique(out)
        assert np.median(np.diff(levels)) == pytest.approx(q * z * z, rel=0.1)
        assert np.abs(out - ideal).max() <= q * (z * 1.05) ** 2 / 2 * 1.1
    out = apply_sensor_model(flat(2.0), CAMERA, model(quantization_m=q), np.random.default_rng(0))
    assert np.unique(out).size == 1 and abs(float(out[0, 0]) - 2.0) <= q * 4 / 2


def test_range_is_reported_as_a_camera_driver_does():
    """Below the min range: no return. Beyond the max range: published as measured (too far is free
    space, never a hole). Beyond a drawn reach (structured light, time of flight): no return."""
    ideal = np.array([[0.05, 0.1, 2.0, 5.0, 5.01, 12.0, np.nan]], dtype=np.float32)
    out = apply_sensor_model(ideal, CAMERA, OFF, np.random.default_rng(0))
    assert np.isnan(out[0, [0, 6]]).all()
    np.testing.assert_array_equal(out[0, 1:6], ideal[0, 1:6])
    narrow = apply_sensor_model(ideal, CAMERA, model(min_range_m=0.2, max_return_m=8.0), np.random.default_rng(0))
    assert np.isnan(narrow[0, [0, 1, 5, 6]]).all()
    np.testing.assert_array_equal(narrow[0, 2:5], ideal[0, 2:5])
    as_32fc1 = encode_depth(narrow, "32FC1")
    assert as_32fc1.dtype == np.float32 and np.isnan(as_32fc1[0, [0, 1, 5]]).all()
    assert as_32fc1[0, 4] == np.float32(5.01)
    as_16uc1 = encode_depth(narrow, "16UC1")
    assert as_16uc1.dtype == np.uint16 and as_16uc1.tolist() == [[0, 0, 2000, 5000, 5010, 0, 0]]
    with pytest.raises(ValueError, match="encoding"):
        encode_depth(narrow, "8UC1")


def test_models_are_reproducible_from_the_generator_seed():
    image = step_image(1.0, 3.0, slice(80, 120))
    everything = model(stereo_sigma_per_m2=0.01, dropout=0.02, edge_hole_prob=0.5, shadow_baseline_m=0.05,
                       quantization_m=0.004, min_range_m=0.2, max_return_m=4.5)
    a = apply_sensor_model(image, CAMERA, everything, np.random.default_rng(7))
    b = apply_sensor_model(image, CAMERA, everything, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.shape == image.shape
