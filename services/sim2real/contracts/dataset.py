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
import zipfile
import zlib
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


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class Dataset:
    """Read a dataset folder, verifying every shard against the manifest.

    Every shard must match its sha256 and hold exactly what the format says (``depth_mm``
    (N, H, W) uint16 of one size throughout, ``label`` (N,) integers inside the action space, N
    as listed); anything else, self-consistent or not, is a :class:`DatasetError` naming the shard.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not (self.root / MANIFEST).exists():
            raise DatasetError(f"{self.root} is not a finished dataset: no {MANIFEST}")
        self.manifest = read_json(self.root / MANIFEST, what="dataset manifest")
        if not isinstance(self.manifest, dict) or self.manifest.get("format_version") != FORMAT_VERSION:
            version = self.manifest.get("format_version") if isinstance(self.manifest, dict) else None
            raise DatasetError(f"{self.root}: dataset format {version} is not {FORMAT_VERSION}")
        shards = self.manifest.get("shards")
        if not isinstance(shards, list) or not shards:
            raise DatasetError(f"{self.root}: the dataset manifest lists no shards")
        for k, shard in enumerate(shards):
            if not (isinstance(shard, dict) and isinstance(shard.get("file"), str) and shard["file"]
                    and Path(shard["file"]).name == shard["file"] and _count(shard.get("count"))
                    and isinstance(shard.get("sha256"), str)):
                raise DatasetError(f"{self.root}: manifest shards[{k}] needs a file name in the folder, a count "
                                   f"of at least 1 and a sha256")
        self.sha256 = sha256_file(self.root / MANIFEST)

    def __len__(self) -> int:
        return int(sum(s["count"] for s in self.manifest["shards"]))

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """All images and labels: ((N, H, W) uint16 millimetres, (N,) uint8)."""
        depths, labels = [], []
        for shard in self.manifest["shards"]:
            path = self.root / shard["file"]
            if not path.is_file():
                raise DatasetError(f"shard {path} listed in the manifest is missing")
            if sha256_file(path) != shard["sha256"]:
                raise DatasetError(f"shard {path} is corrupt or truncated: sha256 does not match the manifest")
            depth, label = _read_shard(path)
            if len(depth) != shard["count"] or len(label) != shard["count"]:
                raise DatasetError(f"shard {path} holds {len(depth)} images and {len(label)} labels, the manifest "
                                   f"says {shard['count']}")
            if depths and depth.shape[1:] != depths[0].shape[1:]:
                raise DatasetError(f"shard {path} holds {depth.shape[2]}x{depth.shape[1]} images, the first shard "
                                   f"{depths[0].shape[2]}x{depths[0].shape[1]}")
            if label.size and not 0 <= int(label.min()) <= int(label.max()) < len(ACTIONS):
                raise DatasetError(f"shard {path}: labels {int(label.min())}..{int(label.max())} are outside the "
                                   f"action space 0..{len(ACTIONS) - 1}")
            depths.append(depth)
            labels.append(label.astype(np.uint8))
        return np.concatenate(depths), np.concatenate(labels)


def _read_shard(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``depth_mm`` and ``label`` of one shard, checked for the format's types and shapes."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise DatasetError(f"shard {path} is a single array, not an .npz archive")
        with data:
            missing = sorted({"depth_mm", "label"} - set(data.files))
            if missing:
                raise DatasetError(f"shard {path} lacks the array(s) {', '.join(missing)}")
            depth, label = data["depth_mm"], data["label"]
    except DatasetError:
        raise
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise DatasetError(f"shard {path} is not a readable .npz shard ({type(exc).__name__}: {detail})") from None
    if depth.dtype != np.uint16 or depth.ndim != 3:
        raise DatasetError(f"shard {path}: depth_mm is {depth.dtype} {depth.shape}, expected (N, H, W) uint16")
    if label.ndim != 1 or label.dtype.kind not in "ui":
        raise DatasetError(f"shard {path}: label is {label.dtype} {label.shape}, expected (N,) integers")
    return depth, label
