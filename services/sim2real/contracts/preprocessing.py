"""The one preprocessing function: training, evaluation and the robot all call this.

Depth in metres goes in (any resolution); a float32 ``(size, size)`` array in [0, 1] comes out:
0 is the camera's minimum range, 1 its maximum. Invalid pixels (NaN, inf, 0 and anything
outside the camera's range after clipping rules below) are written as ``invalid_value``.

The normalisation uses the fixed range of the camera, never a per-image statistic: an image of a
flat wall has zero variance, and a per-image mean would make a near wall look like a far one.
The exported model's manifest records this spec; the runtime reads it from there.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything a consumer needs to turn a depth image into the model's input tensor."""

    size: int = 96
    min_range_m: float = 0.1
    max_range_m: float = 5.0
    invalid_value: float = 0.0
    version: int = 1

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "PreprocessSpec":
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing key(s) {unknown}: this sim2real reads version 1")
        spec = cls(**data)
        if spec.version != 1:
            raise ValueError(f"preprocessing version {spec.version} is not supported (expected 1)")
        if not (0 < spec.min_range_m < spec.max_range_m):
            raise ValueError("preprocessing needs 0 < min_range_m < max_range_m")
        if spec.size < 16:
            raise ValueError(f"preprocessing size {spec.size} is below 16 pixels")
        return spec


@lru_cache(maxsize=32)
def _area_matrix(n_out: int, n_in: int) -> np.ndarray:
    """Row-stochastic (n_out, n_in) matrix: each output pixel averages the input it covers."""
    edges = np.linspace(0.0, n_in, n_out + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    left = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, left + 1) - np.maximum(lo, left), 0.0, None)
    return (overlap / overlap.sum(axis=1, keepdims=True)).astype(np.float32)


def resize_area(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Area-averaging resize of a 2-D float array (numpy only, exact for any ratio)."""
    rows = _area_matrix(height, image.shape[0])
    cols = _area_matrix(width, image.shape[1])
    return rows @ image.astype(np.float32, copy=False) @ cols.T


def valid_mask(depth_m: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """True where a pixel carries a usable range reading."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(depth_m) & (depth_m > 0.0)


def preprocess(depth_m: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Depth image in metres (H, W) → model input (size, size), float32 in [0, 1].

    Valid readings are clipped to [min_range, max_range] and scaled to [0, 1]; invalid ones
    become ``spec.invalid_value``. The result is area-resized, so a few invalid pixels blend in
    rather than dominate.
    """
    depth = np.asarray(depth_m)
    if depth.ndim != 2:
        raise ValueError(f"depth image must be 2-D (H, W), got shape {depth.shape}")
    depth = depth.astype(np.float32, copy=False)
    valid = valid_mask(depth, spec)
    span = spec.max_range_m - spec.min_range_m
    scaled = (np.clip(np.where(valid, depth, spec.min_range_m), spec.min_range_m, spec.max_range_m)
              - spec.min_range_m) / span
    scaled = np.where(valid, scaled, np.float32(spec.invalid_value)).astype(np.float32)
    if scaled.shape != (spec.size, spec.size):
        scaled = resize_area(scaled, spec.size, spec.size)
    return scaled


def preprocess_batch(depths_m: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """(N, H, W) depth in metres → (N, 1, size, size) float32 model input."""
    return np.stack([preprocess(d, spec) for d in depths_m])[:, None, :, :]


def depth_from_millimetres(depth_mm: np.ndarray) -> np.ndarray:
    """16UC1 convention (uint16 millimetres, 0 invalid) → float32 metres with NaN invalid."""
    depth = depth_mm.astype(np.float32) / 1000.0
    depth[depth_mm == 0] = np.nan
    return depth


def depth_to_millimetres(depth_m: np.ndarray) -> np.ndarray:
    """float32 metres (NaN/inf/≤0 invalid) → 16UC1 convention (uint16 millimetres, 0 invalid)."""
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(depth_m) & (depth_m > 0)
        mm = np.where(ok, np.rint(np.clip(depth_m, 0.0, 65.535) * 1000.0), 0.0)
    return mm.astype(np.uint16)
