"""The training data: the seeded split, the contract's preprocessing and the dataset checks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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



def parse_sources(data: str | Path | Sequence[str | Path] | Mapping[str, str | Path]) -> list[tuple[str, Path]]:
    """The datasets to train on as (name, folder) pairs, in order; the first is the primary one.

    ``data`` is one folder, a list of folders or ``NAME=FOLDER`` strings, or a {name: folder}
    mapping. A folder given without a name is named after itself.
    """
    if isinstance(data, Mapping):
        items = [(str(name), Path(path)) for name, path in data.items()]
    else:
        items = []
        for entry in [data] if isinstance(data, (str, Path)) else list(data):
            text = str(entry)
            name, sep, path = text.partition("=") if isinstance(entry, str) else ("", "", text)
            if sep and name and "/" not in name:
                items.append((name, Path(path)))
            else:
                items.append((Path(text).name or text, Path(text)))
    if not items:
        raise ValueError("no dataset given")
    names = [name for name, _ in items]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"dataset name {repeated[0]!r} is given twice: name them (--data NAME=FOLDER)")
    return items


def batch_counts(sizes: Sequence[int], names: Sequence[str], mix: Mapping[str, float] | None,
                 batch_size: int) -> list[tuple[list[int], int]]:
    """How each batch is drawn: (source indices, images per batch) groups.

    Each dataset named in ``mix`` is a group of its own with that share of the batch; the others
    pool into one group that fills the rest (sampled by size). Shares become whole images by largest
    remainders; each group needs at least one image per batch.
    """
    mix = dict(mix or {})
    unknown = sorted(set(mix) - set(names))
    if unknown:
        raise ValueError(f"mix names {', '.join(map(repr, unknown))}, which is not a dataset "
                         f"(datasets: {', '.join(names)})")
    groups = [([names.index(name)], share) for name, share in mix.items()]
    rest = [k for k, name in enumerate(names) if name not in mix]
    if rest:
        groups.append((rest, 1.0 - sum(mix.values())))
    elif abs(sum(mix.values()) - 1.0) > 1e-6:
        raise ValueError(f"every dataset is in the mix, so the shares must add up to 1, not {sum(mix.values()):g}")
    exact = [share * batch_size for _, share in groups]
    counts = [int(np.floor(value)) for value in exact]
    for k in np.argsort([-(value - np.floor(value)) for value in exact], kind="stable")[:batch_size - sum(counts)]:
        counts[k] += 1
    for (members, share), count in zip(groups, counts):
        if count < 1 or sum(sizes[k] for k in members) < 1:
            who = ", ".join(names[k] for k in members)
            raise ValueError(f"a share of {share:g} of a batch of {batch_size} gives {who} no image per batch: "
                             f"raise the share or the batch size")
    return [(members, count) for (members, _), count in zip(groups, counts)]


def mixed_order(groups: list[tuple[list[int], int]], offsets: Sequence[int], sizes: Sequence[int],
                steps: int, seed: int, epoch: int) -> np.ndarray:
    """Epoch ``epoch``'s batches as one (steps * batch_size,) index array into the pooled training set.

    Each group is an endless stream of seeded permutations of its images; batch ``t`` takes the
    next ``count`` of each stream, so a small dataset with a large share is revisited more often.
    A pure function of (seed, epoch): resuming draws the same batches.
    """
    parts = []
    for g, (members, count) in enumerate(groups):
        pool = np.concatenate([offsets[k] + np.arange(sizes[k]) for k in members])
        start, end = (epoch - 1) * steps * count, epoch * steps * count
        cycles = range(start // len(pool), (end - 1) // len(pool) + 1)
        stream = np.concatenate([pool[np.random.default_rng([seed, g, c, 0x313]).permutation(len(pool))]
                                 for c in cycles])
        first = cycles[0] * len(pool)
        parts.append(stream[start - first:end - first].reshape(steps, count))
    return np.concatenate(parts, axis=1).reshape(-1)
