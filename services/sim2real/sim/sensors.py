"""Depth sensor models, applied by every backend to its ideal render (numpy only).

A backend renders ideal z-depth in metres (NaN where no surface is hit); ``apply_sensor_model``
turns it into what a depth camera would publish, in this order:

1. **shadows** (``shadow_baseline_m``): a stereo camera measures depth only where both imagers see
   the surface. The second imager sits ``baseline`` to the right of the reference one, so a band
   on the left of every near object, as wide as the disparity difference, is invalid. Computed
   exactly per image row (rows are epipolar lines): a pixel is shadowed when a pixel to its right
   lands at or left of it in the second image.
2. **edge holes** (``edge_hole_prob``): pixels on a depth discontinuity (a step between 4-neighbours
   larger than ``edge_jump_m * z^2``, i.e. a disparity step; the far floor at grazing angles is not
   an edge) read invalid with this probability: the mixed pixels that stereo matching rejects.
3. **stereo noise** (``stereo_sigma_per_m2``): Gaussian, standard deviation ``k * z^2``.
4. **quantisation** (``quantization_m``): ``depth`` mode rounds to a fixed step; ``disparity`` mode
   rounds inverse depth to a step of ``quantization_m`` per metre, so the depth step is
   ``quantization_m * z^2`` (stereo disparity is integer-subpixel).
5. **range**, as a real camera reports it: a surface closer than the drawn ``min_range_m`` reads
   no return (a stereo camera cannot match closer than its minimum distance; the D435 publishes 0
   there), and so does one farther than ``max_return_m`` when it is set (structured light and time
   of flight lose far surfaces). A reading beyond the camera's ``max_range_m`` is **published as
   measured**: it is free space ("too far" in the pixel contract), never a hole.
6. **dropout** (``dropout``): that fraction of pixels, anywhere, read no return.

The ideal render reaches ``contracts.scenario.RENDER_REACH_M`` (20 m, beyond every built-in room); a ray that meets
nothing within it reads no return, as a real camera looking into open space does. The result is
the 32FC1 convention (float32 metres, NaN = no return); ``encode_depth`` writes the 16UC1 one
(uint16 millimetres, 0 = no return), the way a camera driver publishes either. What the model then
makes of each pixel is ``contracts.preprocessing``'s pixel contract, the same for both.
"""

from __future__ import annotations

import math

import numpy as np

from sim2real.contracts.preprocessing import depth_to_millimetres
from sim2real.contracts.scenario import Camera
from sim2real.sim.world import CameraSample

ENCODINGS = ("32FC1", "16UC1")



def focal_px(width: int, hfov_deg: float) -> float:
    """Focal length in pixels of a pinhole camera ``width`` pixels wide."""
    return (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)


def shadow_mask(depth: np.ndarray, fx: float, baseline_m: float) -> np.ndarray:
    """Pixels the second imager (``baseline_m`` to the right) cannot see; NaN counts as infinitely far."""
    width = depth.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        disparity = np.where(np.isfinite(depth) & (depth > 0), np.float32(fx * baseline_m) / depth, 0.0)
    right = np.arange(width, dtype=np.float32)[None, :] - disparity.astype(np.float32)
    # Smallest second-image column of any pixel strictly to the right of each pixel.
    suffix = np.minimum.accumulate(right[:, ::-1], axis=1)[:, ::-1]
    beyond = np.empty_like(suffix)
    beyond[:, :-1] = suffix[:, 1:]
    beyond[:, -1] = np.inf
    return right >= beyond


def edge_mask(depth: np.ndarray, jump_m: float) -> np.ndarray:
    """Pixels next to a depth step above ``jump_m * z^2`` (z of the nearer side); NaN counts as far."""
    z = np.where(np.isfinite(depth), depth, np.float32(1e6)).astype(np.float32, copy=False)
    mask = np.zeros(z.shape, dtype=bool)
    for axis in (0, 1):
        a = z[:-1, :] if axis == 0 else z[:, :-1]
        b = z[1:, :] if axis == 0 else z[:, 1:]
        near = np.minimum(a, b)
        step = np.abs(a - b) > np.float32(jump_m) * near * near
        if axis == 0:
            mask[:-1, :] |= step
            mask[1:, :] |= step
        else:
            mask[:, :-1] |= step
            mask[:, 1:] |= step
    return mask & np.isfinite(depth)


def quantize(depth: np.ndarray, step: float, mode: str) -> np.ndarray:
    """Round depth to ``step`` (``depth`` mode) or inverse depth to ``step`` per metre (``disparity``)."""
    if mode == "depth":
        return np.round(depth / np.float32(step)) * np.float32(step)
    if mode == "disparity":
        with np.errstate(divide="ignore", invalid="ignore"):
            levels = np.round(np.float32(1.0 / step) / depth)
            return (np.float32(1.0 / step) / levels).astype(np.float32)
    raise ValueError(f"quantization_mode must be 'depth' or 'disparity', not {mode!r}")


def apply_sensor_model(ideal_m: np.ndarray, camera: Camera, sample: CameraSample,
                       rng: np.random.Generator) -> np.ndarray:
    """Ideal z-depth (metres, NaN where nothing was hit) → what the camera would publish (32FC1, NaN = no return).

    Each stage draws from ``rng`` only when it is switched on, so a scenario without a model
    consumes the same random numbers as before the model existed.
    """
    depth = ideal_m.astype(np.float32, copy=True)
    invalid = np.zeros(depth.shape, dtype=bool)
    if sample.shadow_baseline_m > 0:
        invalid |= shadow_mask(ideal_m, focal_px(depth.shape[1], sample.hfov_deg), sample.shadow_baseline_m)
    if sample.edge_hole_prob > 0:
        edges = np.flatnonzero(edge_mask(depth, sample.edge_jump_m))
        invalid.ravel()[edges[rng.random(len(edges), dtype=np.float32) < sample.edge_hole_prob]] = True
    if sample.stereo_sigma_per_m2 > 0:
        sigma = np.float32(sample.stereo_sigma_per_m2) * np.nan_to_num(depth, nan=0.0) ** 2
        depth += rng.standard_normal(depth.shape, dtype=np.float32) * sigma
    if sample.quantization_m > 0:
        depth = quantize(depth, sample.quantization_m, sample.quantization_mode)
    low = camera.min_range_m if sample.min_range_m is None else sample.min_range_m
    with np.errstate(invalid="ignore"):
        invalid |= depth < low
        if sample.max_return_m > 0:
            invalid |= ideal_m > sample.max_return_m
    if sample.dropout > 0:
        invalid |= rng.random(depth.shape, dtype=np.float32) < sample.dropout
    depth[invalid] = np.nan
    return depth


def encode_depth(depth_m: np.ndarray, encoding: str) -> np.ndarray:
    """32FC1 (float32 metres, NaN = no return) or 16UC1 (uint16 millimetres, 0 = no return), as drivers
    publish; every pixel keeps its state (``contracts.preprocessing.pixel_states``)."""
    if encoding == "32FC1":
        out = np.asarray(depth_m, dtype=np.float32).copy()
        with np.errstate(invalid="ignore"):
            out[np.isnan(out) | ((out <= 0) & (out != -np.inf))] = np.nan
        return out
    if encoding == "16UC1":
        return depth_to_millimetres(depth_m)
    raise ValueError(f"depth encoding must be one of {ENCODINGS}, not {encoding!r}")
