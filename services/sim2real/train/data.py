"""The training data: the seeded split, the contract's preprocessing and the dataset checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim2real.contracts.actions import ACTIONS
from sim2real.contracts.camera import CameraContract
from sim2real.contracts.dataset import Dataset, image_of, intrinsics_of
from sim2real.contracts.preprocessing import PreprocessSpec, depth_from_millimetres, preprocess


def split_indices(count: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, val) index split; the exporter reuses it to find held-out images."""
    n_val = int(round(count * val_fraction))
    if n_val < 1 or count - n_val < 2:
        raise ValueError(f"{count} images cannot be split into ≥ 2 training and ≥ 1 validation images "
                         f"with val_fraction={val_fraction}")
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def preprocess_millimetres(depth_mm: np.ndarray, cameras: np.ndarray, spec: PreprocessSpec,
                           camera: CameraContract) -> np.ndarray:
    """(N, H, W) uint16 millimetres with (N, 6) intrinsics → (N, 2, h, w) float32 model input.

    Each image goes through the contract's mapping with its own intrinsics, as on the robot.
    """
    out = np.empty((len(depth_mm), *spec.input_shape()), np.float32)
    for i, (image, intrinsics) in enumerate(zip(depth_mm, intrinsics_of(cameras))):
        out[i] = preprocess(depth_from_millimetres(image_of(image, cameras[i])), spec, camera, intrinsics)
    return out


def spec_for(dataset: Dataset, input_size: int) -> tuple[PreprocessSpec, CameraContract]:
    """The preprocessing and camera contract for a dataset: its nominal camera's range and field of view,
    an input ``input_size`` pixels wide and as high as that field of view makes square pixels."""
    camera = dataset.manifest.get("camera") or {}
    contract = dataset.camera_contract()
    tan_x, tan_y = contract.tan_half()
    try:
        spec = PreprocessSpec(width=input_size, height=max(1, round(input_size * tan_y / tan_x)),
                              min_range_m=float(camera["min_range_m"]), max_range_m=float(camera["max_range_m"]))
    except KeyError as exc:
        raise ValueError(f"{dataset.root}: dataset manifest camera has no {exc.args[0]}") from None
    return spec, contract



def check_classes(labels: np.ndarray, root: Path, allow_missing: bool) -> None:
    """Refuse a dataset in which an action never occurs (unless ``allow_missing``)."""
    counts = np.bincount(labels, minlength=len(ACTIONS))
    missing = [name for name, count in zip(ACTIONS, counts) if count == 0]
    if missing and not allow_missing:
        mix = ", ".join(f"{name} {int(count)}" for name, count in zip(ACTIONS, counts))
        names = "', '".join(missing)
        raise ValueError(f"dataset {root} has no '{names}' images ({mix}): a policy trained on it "
                         f"can never choose that action; generate a balanced dataset (datagen --balance) or pass "
                         f"--allow-missing-classes")

