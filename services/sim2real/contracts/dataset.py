"""The dataset format shared by datagen (writer) and train (reader): shards plus a manifest.

A dataset is a folder::

    manifest.json        scenario, seed, generator, camera, counts per class, every shard's sha256
    shard-00000.npz      depth_mm (N, H, W) uint16, 16UC1 convention: millimetres, 0 = invalid
                         label    (N,) uint8, index into contracts.actions.ACTIONS

Shards are written atomically and the manifest last, so a folder without a manifest is an
unfinished dataset, and a shard whose sha256 differs from the manifest is refused by the reader.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from sim2real.contracts.actions import ACTIONS
from sim2real.contracts.manifest import read_json, sha256_file, write_bytes_atomic

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npz"


def write_shard(path: Path, depth_mm: np.ndarray, labels: np.ndarray) -> str:
    """Write one shard atomically; return its sha256."""
    if depth_mm.dtype != np.uint16 or depth_mm.ndim != 3:
        raise ValueError("depth_mm must be a (N, H, W) uint16 array")
    if labels.shape != (len(depth_mm),):
        raise ValueError("labels must have one entry per image")
    buffer = io.BytesIO()
    np.savez(buffer, depth_mm=depth_mm, label=labels.astype(np.uint8))
    return write_bytes_atomic(path, buffer.getvalue())


class DatasetError(ValueError):
    """A dataset that is missing, unfinished or corrupt."""


class Dataset:
    """Read a dataset folder, verifying every shard against the manifest."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not (self.root / MANIFEST).exists():
            raise DatasetError(f"{self.root} is not a finished dataset: no {MANIFEST}")
        self.manifest = read_json(self.root / MANIFEST, what="dataset manifest")
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise DatasetError(f"{self.root}: dataset format {self.manifest.get('format_version')} "
                               f"is not {FORMAT_VERSION}")
        self.sha256 = sha256_file(self.root / MANIFEST)

    def __len__(self) -> int:
        return int(sum(s["count"] for s in self.manifest["shards"]))

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """All images and labels: ((N, H, W) uint16 millimetres, (N,) uint8)."""
        depths, labels = [], []
        for shard in self.manifest["shards"]:
            path = self.root / shard["file"]
            if not path.exists():
                raise DatasetError(f"shard {path} listed in the manifest is missing")
            if sha256_file(path) != shard["sha256"]:
                raise DatasetError(f"shard {path} is corrupt or truncated: sha256 does not match the manifest")
            with np.load(path, allow_pickle=False) as data:
                depth, label = data["depth_mm"], data["label"]
            if len(depth) != shard["count"] or len(label) != shard["count"]:
                raise DatasetError(f"shard {path} holds {len(depth)} images, the manifest says {shard['count']}")
            depths.append(depth)
            labels.append(label)
        labels_all = np.concatenate(labels)
        if labels_all.size and labels_all.max() >= len(ACTIONS):
            raise DatasetError(f"{self.root}: label {labels_all.max()} is outside the action space")
        return np.concatenate(depths), labels_all
