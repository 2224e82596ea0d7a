"""Training augmentation that matches the depth sensor model, applied to metric depth.

The simulators' sensor model (``sim.sensors.apply_sensor_model``) turns an ideal render into what
the camera publishes. The augmentation applies the parts of it that can be applied again to an
image that already went through it, with strengths drawn per image from [0, ceiling]:

- edge holes: pixels on a depth discontinuity (``sim.sensors.edge_mask``, the sensor model's own
  test: a 4-neighbour step above ``edge_jump_m·z²``) read invalid with probability ``edge_holes``;
- stereo noise: Gaussian with standard deviation ``k·z²`` (error grows with distance squared);
- range: readings pushed below the camera's minimum range read no return, as in the sensor model
  (a reading pushed beyond the maximum stays: it is "too far", free space);
- dropout: a fraction of pixels, anywhere, read invalid;
- holes: up to ``holes`` elliptical patches of invalid pixels, as real stereo cameras lose on
  textureless or shiny surfaces (the simulators do not model these, the robot's camera has them).

Shadows and quantisation are not re-applied: they depend on the ideal render, and the dataset's
images carry them already. The ceilings default to the widest values of the scenario that made
the dataset (its ``noise`` section and ``randomization`` ranges).

The augmentation runs on the image in metres at the dataset's native resolution, *before* the
contract's ``preprocess``, exactly where the sensor model acts in the simulators; the training
input is then made by the one preprocessing function (``contracts.preprocessing``), so nothing
here duplicates it. Every random number comes from the generator passed in, so a batch's
augmentation is a pure function of (seed, epoch, step, rank): runs are reproducible and a
resumed run augments exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from sim2real.contracts.camera import CameraContract
from sim2real.contracts.dataset import image_of, intrinsics_of
from sim2real.contracts.preprocessing import PreprocessSpec, depth_from_millimetres, preprocess
from sim2real.sim.sensors import edge_mask

# Used when the dataset manifest carries no scenario (hand-made datasets): the default scenario's
# randomization ceilings.
DEFAULT_SIGMA_PER_M2 = 0.01
DEFAULT_DROPOUT = 0.03
DEFAULT_EDGE_HOLES = 0.2
DEFAULT_EDGE_JUMP_M = 0.1
HOLE_RADIUS = (0.03, 0.12)  # fraction of the image side


@dataclass(frozen=True)
class SensorAugment:
    """How strongly to corrupt a training image; each strength is drawn from [0, max] per image.

    ``probability`` is the chance that an image is augmented at all (0 disables augmentation).
    """

    probability: float = 0.5
    sigma_per_m2: float = DEFAULT_SIGMA_PER_M2
    dropout: float = DEFAULT_DROPOUT
    holes: int = 3
    edge_holes: float = DEFAULT_EDGE_HOLES
    edge_jump_m: float = DEFAULT_EDGE_JUMP_M

    def validate(self) -> None:
        if not (0.0 <= self.probability <= 1.0):
            raise ValueError(f"augment probability must be within [0, 1], got {self.probability!r}")
        if not (np.isfinite(self.sigma_per_m2) and self.sigma_per_m2 >= 0):
            raise ValueError(f"noise sigma must be a number ≥ 0 (metres per m²), got {self.sigma_per_m2!r}")
        if not (0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be within [0, 1), got {self.dropout!r}")
        if not isinstance(self.holes, int) or self.holes < 0:
            raise ValueError(f"holes must be an integer ≥ 0, got {self.holes!r}")
        if not (0.0 <= self.edge_holes <= 1.0) or not self.edge_jump_m > 0:
            raise ValueError(f"edge holes need a probability in [0, 1] and a jump > 0, got "
                             f"{self.edge_holes!r}, {self.edge_jump_m!r}")

    @property
    def enabled(self) -> bool:
        return self.probability > 0 and (self.sigma_per_m2 > 0 or self.dropout > 0 or self.holes > 0
                                         or self.edge_holes > 0)

    def to_dict(self) -> dict:
        return {**asdict(self), "hole_radius": list(HOLE_RADIUS), "applied_to": "metric depth, before preprocess"}

    @classmethod
    def for_dataset(cls, manifest: dict, probability: float, sigma_per_m2: float | None,
                    dropout: float | None, holes: int) -> "SensorAugment":
        """Strength ceilings from the scenario that made the dataset (the widest of its nominal noise
        and randomization range), unless given explicitly."""
        scenario = manifest.get("scenario") or {}
        noise, rnd = scenario.get("noise") or {}, scenario.get("randomization") or {}

        def ceiling(key: str, default: float) -> float:
            values = [float(noise[key])] if key in noise else []
            if rnd.get(key):
                values.append(float(max(rnd[key])))
            return max(values) if values else default

        return cls(probability=float(probability),
                   sigma_per_m2=ceiling("stereo_sigma_per_m2", DEFAULT_SIGMA_PER_M2) if sigma_per_m2 is None
                   else float(sigma_per_m2),
                   dropout=ceiling("dropout", DEFAULT_DROPOUT) if dropout is None else float(dropout),
                   holes=int(holes), edge_holes=ceiling("edge_hole_prob", DEFAULT_EDGE_HOLES),
                   edge_jump_m=float(noise.get("edge_jump_m", DEFAULT_EDGE_JUMP_M)))


def corrupt(depth_m: np.ndarray, augment: SensorAugment, spec: PreprocessSpec,
            rng: np.random.Generator) -> np.ndarray:
    """One (H, W) depth image in metres (NaN invalid) → a copy with sensor noise, dropout and holes."""
    depth = np.array(depth_m, dtype=np.float32, copy=True)
    height, width = depth.shape
    edge_holes = rng.uniform(0.0, augment.edge_holes)
    if edge_holes > 0:
        edges = np.flatnonzero(edge_mask(depth, augment.edge_jump_m))
        depth.ravel()[edges[rng.random(len(edges)) < edge_holes]] = np.nan
    sigma = rng.uniform(0.0, augment.sigma_per_m2)
    if sigma > 0:
        depth += rng.standard_normal(depth.shape, dtype=np.float32) * np.float32(sigma) * np.nan_to_num(depth) ** 2
    with np.errstate(invalid="ignore"):
        depth[depth < spec.min_range_m] = np.nan
    dropout = rng.uniform(0.0, augment.dropout)
    if dropout > 0:
        depth[rng.random(depth.shape) < dropout] = np.nan
    for _ in range(int(rng.integers(0, augment.holes + 1))):
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        ry = max(1.0, rng.uniform(*HOLE_RADIUS) * height)
        rx = max(1.0, rng.uniform(*HOLE_RADIUS) * width)
        top, bottom = max(0, int(cy - ry)), min(height, int(cy + ry) + 1)
        left, right = max(0, int(cx - rx)), min(width, int(cx + rx) + 1)
        rows = ((np.arange(top, bottom) + 0.5 - cy) / ry) ** 2
        cols = ((np.arange(left, right) + 0.5 - cx) / rx) ** 2
        depth[top:bottom, left:right][rows[:, None] + cols[None, :] <= 1.0] = np.nan
    return depth


def augment_millimetres(depth_mm: np.ndarray, cameras: np.ndarray, augment: SensorAugment, spec: PreprocessSpec,
                        camera: CameraContract, rng: np.random.Generator) -> np.ndarray:
    """(N, H, W) uint16 millimetres with (N, 6) intrinsics → (N, 2, h, w) model input, every image corrupted."""
    out = np.empty((len(depth_mm), *spec.input_shape()), np.float32)
    for i, (image, intrinsics) in enumerate(zip(depth_mm, intrinsics_of(cameras))):
        metres = depth_from_millimetres(image_of(image, cameras[i]))
        out[i] = preprocess(corrupt(metres, augment, spec, rng), spec, camera, intrinsics)
    return out
