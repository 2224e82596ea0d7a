"""The dataset format shared by datagen (writer) and train (reader): shards plus a manifest.

A dataset is a folder::

    manifest.json        scenario, seed, generator, camera, counts per class, every shard's sha256
    shard-00000.npz      depth_mm (N, H, W) uint16, 16UC1 convention: millimetres, 0 = no return
                         label    (N,) uint8, index into contracts.actions.ACTIONS
                         camera   (N, 6) float64, each image's intrinsics: width, height, fx, fy,
                                  cx, cy (``contracts.camera.Intrinsics``, CameraInfo convention)

Each image is the raw depth its camera published, as a robot's driver would (16UC1): the image
``i`` is ``depth_mm[i, :height_i, :width_i]``; images smaller than (H, W) are padded with 0 to
the right and below. Training maps each through its own intrinsics, exactly as the robot does.
The manifest's ``camera`` block describes the scenario's nominal camera (the one a model trained
on the dataset is trained for).

Format history: 1 had no per-image camera (one camera, square, holes for readings beyond the
camera's max range); 2 is the above. A reader refuses another version with what to do.

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
from sim2real.contracts.camera import CameraContract, Intrinsics
from sim2real.contracts.manifest import read_json, sha256_file, write_bytes_atomic

MANIFEST = "manifest.json"
FORMAT_VERSION = 2


class DatasetError(ValueError):
    """A dataset that is missing, unfinished or corrupt."""


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npz"


def write_shard(path: Path, depth_mm: np.ndarray, labels: np.ndarray, cameras: np.ndarray) -> str:
    """Write one shard atomically; return its sha256. ``cameras`` is (N, 6) intrinsics per image."""
    if depth_mm.dtype != np.uint16 or depth_mm.ndim != 3:
        raise ValueError("depth_mm must be a (N, H, W) uint16 array")
    if labels.shape != (len(depth_mm),):
        raise ValueError("labels must have one entry per image")
    cameras = np.asarray(cameras, dtype=np.float64)
    _check_cameras(cameras, depth_mm.shape, path)
    buffer = io.BytesIO()
    np.savez(buffer, depth_mm=depth_mm, label=labels.astype(np.uint8), camera=cameras)
    return write_bytes_atomic(path, buffer.getvalue())


def _check_cameras(cameras: np.ndarray, shape: tuple[int, ...], where: object) -> None:
    if cameras.dtype.kind != "f" or cameras.shape != (shape[0], 6):
        raise DatasetError(f"{where}: camera must be (N, 6) float intrinsics per image, got {cameras.dtype} "
                           f"{cameras.shape}")
    if not np.all(np.isfinite(cameras)) or (cameras[:, :4] <= 0).any():
        raise DatasetError(f"{where}: camera intrinsics must be finite with positive size and focal lengths")
    if (cameras[:, 0] > shape[2]).any() or (cameras[:, 1] > shape[1]).any() \
            or (cameras[:, :2] != np.round(cameras[:, :2])).any():
        raise DatasetError(f"{where}: an image's width x height exceeds the shard's {shape[2]}x{shape[1]} "
                           f"or is not whole pixels")


def intrinsics_of(cameras: np.ndarray) -> list[Intrinsics]:
    """(N, 6) camera rows → one :class:`Intrinsics` per image."""
    return [Intrinsics(int(c[0]), int(c[1]), *map(float, c[2:])) for c in cameras]


def image_of(depth_mm: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Image ``i`` of a shard without its padding: ``depth_mm[:height, :width]``."""
    return depth_mm[:int(camera[1]), :int(camera[0])]


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


class Dataset:
    """Read a dataset folder, verifying every shard against the manifest.

    Every shard must match its sha256 and hold exactly what the format says (``depth_mm``
    (N, H, W) uint16 of one size throughout, ``label`` (N,) integers inside the action space,
    ``camera`` (N, 6) intrinsics of images within (H, W), N as listed); anything else,
    self-consistent or not, is a :class:`DatasetError` naming the shard.
    """

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not (self.root / MANIFEST).exists():
            raise DatasetError(f"{self.root} is not a finished dataset: no {MANIFEST}")
        self.manifest = read_json(self.root / MANIFEST, what="dataset manifest")
        if not isinstance(self.manifest, dict) or self.manifest.get("format_version") != FORMAT_VERSION:
            version = self.manifest.get("format_version") if isinstance(self.manifest, dict) else None
            raise DatasetError(f"{self.root}: dataset format {version} is not this sim2real's {FORMAT_VERSION} "
                               f"(per-image camera intrinsics, readings beyond the max range kept as measured): "
                               f"regenerate it with sim2real datagen")
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

    def load(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All images, labels and cameras: ((N, H, W) uint16 mm, (N,) uint8, (N, 6) intrinsics)."""
        depths, labels, cameras = [], [], []
        for shard in self.manifest["shards"]:
            path = self.root / shard["file"]
            if not path.is_file():
                raise DatasetError(f"shard {path} listed in the manifest is missing")
            if sha256_file(path) != shard["sha256"]:
                raise DatasetError(f"shard {path} is corrupt or truncated: sha256 does not match the manifest")
            depth, label, camera = _read_shard(path)
            if len(depth) != shard["count"] or len(label) != shard["count"]:
                raise DatasetError(f"shard {path} holds {len(depth)} images and {len(label)} labels, the manifest "
                                   f"says {shard['count']}")
            if depths and depth.shape[1:] != depths[0].shape[1:]:
                raise DatasetError(f"shard {path} holds {depth.shape[2]}x{depth.shape[1]} images, the first shard "
                                   f"{depths[0].shape[2]}x{depths[0].shape[1]}")
            if label.size and not 0 <= int(label.min()) <= int(label.max()) < len(ACTIONS):
                raise DatasetError(f"shard {path}: labels {int(label.min())}..{int(label.max())} are outside the "
                                   f"action space 0..{len(ACTIONS) - 1}")
            _check_cameras(camera, depth.shape, path)
            depths.append(depth)
            labels.append(label.astype(np.uint8))
            cameras.append(camera)
        return np.concatenate(depths), np.concatenate(labels), np.concatenate(cameras)

    def camera_contract(self) -> CameraContract:
        """The camera a model trained on this dataset is trained for: the scenario's nominal camera."""
        camera = self.manifest.get("camera") or {}
        try:
            return CameraContract.for_camera(int(camera["width"]), int(camera["height"]), float(camera["hfov_deg"]),
                                             str(camera.get("name", "")))
        except KeyError as exc:
            raise DatasetError(f"{self.root}: dataset manifest camera has no {exc.args[0]}") from None
        except (TypeError, ValueError) as exc:
            raise DatasetError(f"{self.root}: dataset manifest camera: {str(exc).splitlines()[0]}") from None


def _read_shard(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``depth_mm``, ``label`` and ``camera`` of one shard, checked for the format's types and shapes."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise DatasetError(f"shard {path} is a single array, not an .npz archive")
        with data:
            missing = sorted({"depth_mm", "label", "camera"} - set(data.files))
            if missing:
                raise DatasetError(f"shard {path} lacks the array(s) {', '.join(missing)}")
            depth, label, camera = data["depth_mm"], data["label"], data["camera"]
    except DatasetError:
        raise
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as exc:
        detail = str(exc).splitlines()[0] if str(exc) else ""
        raise DatasetError(f"shard {path} is not a readable .npz shard ({type(exc).__name__}: {detail})") from None
    if depth.dtype != np.uint16 or depth.ndim != 3:
        raise DatasetError(f"shard {path}: depth_mm is {depth.dtype} {depth.shape}, expected (N, H, W) uint16")
    if label.ndim != 1 or label.dtype.kind not in "ui":
        raise DatasetError(f"shard {path}: label is {label.dtype} {label.shape}, expected (N,) integers")
    return depth, label, camera
