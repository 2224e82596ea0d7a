"""Depth sensor models, applied by every backend to its ideal render (numpy only)."""

from __future__ import annotations

import numpy as np

from sim2real.contracts.scenario import Camera
from sim2real.sim.world import CameraSample


def apply_sensor_model(ideal_m: np.ndarray, camera: Camera, sample: CameraSample,
                       rng: np.random.Generator) -> np.ndarray:
    """Ideal z-depth (metres, NaN where nothing was hit) → what the camera would publish.

    Stereo noise grows with distance squared; ``dropout`` pixels read invalid; readings outside
    ``[min_range, max_range]`` are invalid (NaN, the 32FC1 convention).
    """
    depth = ideal_m.astype(np.float32, copy=True)
    if sample.stereo_sigma_per_m2 > 0:
        sigma = sample.stereo_sigma_per_m2 * np.nan_to_num(depth, nan=0.0) ** 2
        depth += (rng.standard_normal(depth.shape) * sigma).astype(np.float32)
    with np.errstate(invalid="ignore"):
        out_of_range = (depth < camera.min_range_m) | (depth > camera.max_range_m)
    depth[out_of_range] = np.nan
    if sample.dropout > 0:
        depth[rng.random(depth.shape) < sample.dropout] = np.nan
    return depth
