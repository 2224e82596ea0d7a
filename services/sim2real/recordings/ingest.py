"""`sim2real ingest`: rosbag2 recordings become a dataset in the project's format (contracts/dataset.py).

Each depth image is labelled as ``validate`` labels it (the driver's command in effect after the
reaction lag); stopped, unlabelled and excluded frames (``--exclude``: a driver's mistakes) are
left out, and so is an image the node would refuse (undecodable, a size its CameraInfo does not
describe, covering too little of the scenario camera's field of view, too many no-return
pixels). Each kept image is stored as the driver published it, in 16UC1 millimetres with its
intrinsics from the bag's CameraInfo, so training maps it by the camera contract exactly as the
robot does and recordings of any resolution mix with each other and with simulated data. An
image wider than ``max_width`` is binned by the smallest whole factor that fits (each stored
pixel the mean of the returns in its block, no return when fewer than half hold one; the
intrinsics binned as REP 104 says), so a 1280x720 camera does not fill the disk.

The manifest's camera block (the camera a model trained on the data is trained for), range and
noise come from ``--scenario``; its lineage holds each recording's sha256 (:func:`bag_sha256`)
and the labelling settings. Shards are written atomically, their sha256 recorded in
``progress.json`` as they finish, and the manifest comes last, as in datagen: an interrupted
run continues with ``--resume``, keeping the shards that verify. Bad input (a bag that cannot
be used, no frame left) removes everything the run wrote.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim2real import __version__
from sim2real.contracts.actions import ACTIONS
from sim2real.contracts.camera import CameraContract, CameraError, Intrinsics
from sim2real.contracts.dataset import FORMAT_VERSION, MANIFEST, shard_name, write_shard
from sim2real.contracts.manifest import (
    new_manifest,
    read_json,
    sha256_file,
    write_json_atomic,
)
from sim2real.contracts.preprocessing import (
    CameraMismatch,
    PreprocessSpec,
    depth_to_millimetres,
    input_mapping,
)
from sim2real.recordings.bags import BagError, Recording, bag_sha256
from sim2real.recordings.labels import STOPPED
from sim2real.recordings.settings import RecordingSettings
from sim2real.settings import option, to_dict

INGEST_VERSION = 1


@dataclass(frozen=True)
class IngestSettings(RecordingSettings):
    """Everything ``sim2real ingest`` takes; its CLI flags are derived from these fields."""

    out: str = option("", "dataset folder to create", required=True)
    scenario: str = option("default", "scenario whose camera (field of view, range) the dataset is for")
    max_width: int = option(0, "bin wider images by a whole factor to at most this width (0: twice the "
                               "scenario camera's width)")
    max_invalid_fraction: float = option(0.5, "leave out an image where more of the pixels the model would see "
                                              "hold no return (as the node refuses it)")
    shard_size: int = option(500, "images per shard")
    resume: bool = option(False, "continue an interrupted run in --out (same arguments); shards that verify "
                                 "are kept")

    def check(self) -> None:
        super().check()
        if not self.out:
            raise ValueError("--out is required (the dataset folder to create)")
        if self.shard_size < 1 or self.max_width < 0:
            raise ValueError("--shard-size must be at least 1 and --max-width at least 0")
        if not 0.0 <= self.max_invalid_fraction <= 1.0:
            raise ValueError(f"--max-invalid-fraction must be within [0, 1], got {self.max_invalid_fraction}")


def bin_factor(width: int, max_width: int) -> int:
    return max(1, math.ceil(width / max_width))


def bin_intrinsics(c: Intrinsics, factor: int) -> Intrinsics:
    """The intrinsics of an image binned ``factor`` x ``factor`` (REP 104; the remainder is dropped)."""
    if factor == 1:
        return c
    return Intrinsics(c.width // factor, c.height // factor, c.fx / factor, c.fy / factor,
                      (c.cx + 0.5) / factor - 0.5, (c.cy + 0.5) / factor - 0.5)


def bin_millimetres(depth_mm: np.ndarray, factor: int) -> np.ndarray:
    """16UC1 binned ``factor`` x ``factor``: the mean of the returns, 0 where fewer than half hold one."""
    if factor == 1:
        return depth_mm
    h, w = depth_mm.shape[0] // factor, depth_mm.shape[1] // factor
    blocks = depth_mm[:h * factor, :w * factor].reshape(h, factor, w, factor)
    returns = (blocks > 0).sum(axis=3, dtype=np.int32).sum(axis=1)      # one axis at a time: far faster
    total = blocks.sum(axis=3, dtype=np.int64).sum(axis=1)
    mean = np.rint(total / np.maximum(returns, 1))
    return np.where(2 * returns >= factor * factor, mean, 0).astype(np.uint16)


class _Shards:
    """Fills shards of ``size`` images padded to (height, width); writes each as it fills."""

    def __init__(self, out: Path, size: int, shape: tuple[int, int], done: dict[int, dict], key: dict):
        from sim2real.datagen.generate import _write_progress

        self.out, self.size, self.shape, self.done, self.key = out, size, shape, done, key
        self._write_progress = _write_progress
        self.index = 0
        self._reset()

    def _reset(self) -> None:
        self.depth = np.zeros((self.size, *self.shape), np.uint16)
        self.labels = np.zeros(self.size, np.uint8)
        self.cameras = np.zeros((self.size, 6), np.float64)
        self.count = 0

    def add(self, depth_mm: np.ndarray, label: int, intrinsics: Intrinsics) -> None:
        if self.index not in self.done:
            h, w = depth_mm.shape
            self.depth[self.count, :h, :w] = depth_mm
            self.labels[self.count] = label
            self.cameras[self.count] = intrinsics.to_list()
        self.count += 1
        if self.count == self.size:
            self.flush()

    def flush(self) -> None:
        if self.count == 0:
            return
        if self.index not in self.done:
            n = self.count
            sha = write_shard(self.out / shard_name(self.index), self.depth[:n], self.labels[:n], self.cameras[:n])
            self.done[self.index] = {"file": shard_name(self.index), "count": n, "sha256": sha,
                                     "per_class": np.bincount(self.labels[:n], minlength=len(ACTIONS)).tolist()}
            self._write_progress(self.out, self.key, self.done)
        self.index += 1
        self._reset()


def _resume(out: Path, key: dict) -> dict[int, dict]:
    """The finished shards of an interrupted run in ``out`` whose sha256 verifies."""
    from sim2real.datagen.generate import PROGRESS, _remove_temp_files

    progress = read_json(out / PROGRESS, what="ingest progress file")
    if not isinstance(progress, dict) or progress.get("run") != key:
        raise ValueError(f"cannot resume {out}: it holds a run with other recordings or settings; use the same "
                         f"arguments or a new folder")
    _remove_temp_files(out)
    done = {}
    for index, shard in (progress.get("shards") or {}).items():
        path = out / str(shard.get("file", ""))
        if str(index).isdigit() and path.is_file() and sha256_file(path) == shard.get("sha256"):
            done[int(index)] = shard
    return done


def ingest(settings: IngestSettings) -> dict:
    """Write the recordings' labelled frames as a dataset into ``settings.out``; return its manifest."""
    from sim2real.contracts.scenario import load_scenario
    from sim2real.datagen.generate import PROGRESS, _prepare_out
    from sim2real.progress import progress_bar
    from sim2real.runtime.ros_image import ImageError, decode_depth

    settings.check()
    ranges = settings.ranges()
    spec_scenario = load_scenario(settings.scenario)
    cam = spec_scenario.camera
    contract = CameraContract.for_camera(cam.width, cam.height, cam.hfov_deg, cam.name)
    spec = PreprocessSpec(width=max(16, cam.width), height=max(16, cam.height), min_range_m=cam.min_range_m,
                          max_range_m=cam.max_range_m)
    max_width = settings.max_width or 2 * cam.width
    explicit = Intrinsics.from_values(settings.intrinsics) if settings.intrinsics else None
    out = Path(settings.out)
    labelling = settings.labelling()

    # First pass: every bag opens, has its topics, and gives the shards' padded size.
    shas, shape = [], (1, 1)
    for path in settings.bags:
        with Recording(path, settings.topics(), labelling, need_camera_info=explicit is None,
                       image_time=settings.image_time) as recording:
            cameras = [explicit] if explicit else []
            for _, info in recording.camera_infos:
                with contextlib.suppress(CameraError, TypeError, ValueError, AttributeError):
                    cameras.append(Intrinsics.from_camera_info(info))
            for c in cameras:
                b = bin_intrinsics(c, bin_factor(c.width, max_width))
                shape = (max(shape[0], b.height), max(shape[1], b.width))
        shas.append(bag_sha256(Path(path)))
        if shas[-1] in shas[:-1]:
            raise BagError(f"{path} is a copy of {settings.bags[shas.index(shas[-1])]} (same sha256): its frames "
                           f"would be in the dataset twice")
    key = {"recordings": shas, "scenario_sha256": spec_scenario.sha256(), "max_width": max_width,
           "shard_size": settings.shard_size, "labelling": {k: v for k, v in to_dict(settings).items() if k not in
                                                            ("bags", "out", "resume", "no_progress", "scenario")},
           "ingest_version": INGEST_VERSION, "sim2real_version": __version__}

    if settings.resume and (out / MANIFEST).exists():
        manifest = read_json(out / MANIFEST, what="dataset manifest")
        if manifest.get("run") != key:
            raise ValueError(f"output {out} already holds a finished dataset made with other arguments; "
                             f"choose a new folder")
        return manifest
    created = False
    if settings.resume and (out / PROGRESS).exists():
        done = _resume(out, key)
    else:
        created = _prepare_out(out)
        done = {}
    shards = _Shards(out, settings.shard_size, shape, done, key)
    kept_before = set(done)
    try:
        recordings = []
        for path, sha in zip(settings.bags, shas):
            with Recording(path, settings.topics(), labelling, need_camera_info=explicit is None,
                           image_time=settings.image_time) as recording:
                counts = {"images": 0, "kept": 0, "excluded": 0, "unlabelled": 0, "stopped": 0, "refused": 0}
                with progress_bar(total=recording.n_images, unit="img", desc=f"ingest {recording.name}",
                                  disable=settings.no_progress) as bar:
                    for image in recording.images():
                        counts["images"] += 1
                        bar.update(1)
                        if any(r.covers(recording.name, recording.seconds(image.t_ns)) for r in ranges):
                            counts["excluded"] += 1
                            continue
                        label = recording.commands.label_at(image.t_ns)
                        if label is None or label == STOPPED:
                            counts["unlabelled" if label is None else "stopped"] += 1
                            continue
                        try:
                            intrinsics = explicit or Intrinsics.from_camera_info(image.camera_info)
                            depth = decode_depth(image.msg)
                            if depth.shape != (intrinsics.height, intrinsics.width):
                                raise ImageError("its size differs from its intrinsics'")
                            mapping = input_mapping(spec, contract, intrinsics)
                            mapping.check()
                            _, no_return = mapping(depth)
                            if no_return > settings.max_invalid_fraction:
                                raise ImageError("too many no-return pixels")
                        except (CameraError, CameraMismatch, ImageError, TypeError, AttributeError):
                            counts["refused"] += 1
                            continue
                        factor = bin_factor(intrinsics.width, max_width)
                        shards.add(bin_millimetres(depth_to_millimetres(depth), factor), label,
                                   bin_intrinsics(intrinsics, factor))
                        counts["kept"] += 1
            recordings.append({"bag": str(path), "name": Path(path).name, "sha256": sha, **counts})
        shards.flush()
        total = sum(r["kept"] for r in recordings)
        if total == 0:
            raise BagError("no frame left to ingest: " + "; ".join(
                f"{r['name']}: {r['images']} images, {r['excluded']} excluded, {r['unlabelled']} unlabelled, "
                f"{r['stopped']} stopped, {r['refused']} refused" for r in recordings))
        order = sorted(done)
        per_class = np.sum([done[i]["per_class"] for i in order], axis=0)
        manifest = new_manifest(
            "dataset",
            inputs={"scenario": spec_scenario.sha256(), **_recording_inputs(recordings)},
            format_version=FORMAT_VERSION, count=int(total),
            per_class={name: int(n) for name, n in zip(ACTIONS, per_class)},
            shards=[{"file": done[i]["file"], "count": done[i]["count"], "sha256": done[i]["sha256"],
                     "per_class": {name: int(n) for name, n in zip(ACTIONS, done[i]["per_class"])}} for i in order],
            source="recordings", recordings=recordings, labelling=key["labelling"],
            scenario=spec_scenario.to_dict(), scenario_name=spec_scenario.name,
            scenario_sha256=spec_scenario.sha256(), run=key,
            camera={"name": cam.name, "width": cam.width, "height": cam.height, "hfov_deg": cam.hfov_deg,
                    "min_range_m": cam.min_range_m, "max_range_m": cam.max_range_m},
            generator={"ingest_version": INGEST_VERSION, "sim2real_version": __version__, "max_width": max_width,
                       "shard_size": settings.shard_size})
        write_json_atomic(out / MANIFEST, manifest)
        (out / PROGRESS).unlink(missing_ok=True)
    except (BagError, ValueError, OSError) as exc:
        _undo(out, key, done, kept_before, created, bad_input=isinstance(exc, ValueError))
        raise
    except BaseException:
        _undo(out, key, done, kept_before, created, bad_input=False)
        raise
    return manifest


def _recording_inputs(recordings: list[dict]) -> dict[str, str]:
    """``recording NAME`` → sha256 for the manifest's inputs (``NAME #2`` for a second bag of that name)."""
    inputs: dict[str, str] = {}
    for r in recordings:
        key, n = f"recording {r['name']}", 1
        while key in inputs:
            n += 1
            key = f"recording {r['name']} #{n}"
        inputs[key] = r["sha256"]
    return inputs


def _undo(out: Path, key: dict, done: dict[int, dict], kept_before: set[int], created: bool,
          bad_input: bool) -> None:
    """After a failure: bad input removes what this run wrote; an interruption keeps finished shards."""
    from sim2real.datagen.generate import PROGRESS, _remove_temp_files, _write_progress

    _remove_temp_files(out)
    if not bad_input and done:
        return
    for index, shard in list(done.items()):
        if index not in kept_before:
            (out / shard["file"]).unlink(missing_ok=True)
            del done[index]
    if kept_before:
        _write_progress(out, key, done)
    else:
        (out / PROGRESS).unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
