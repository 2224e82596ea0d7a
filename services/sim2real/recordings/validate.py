"""`sim2real validate`: one or two models against the driver's commands in rosbag2 recordings.

Every image goes through the node's own pipeline (:class:`~sim2real.runtime.node.DepthToTwist`:
decode, fail-safe checks, the camera mapping by the bag's CameraInfo, the model's
preprocessing, inference), so the figures are what the robot would have done. Labels come from
the driver's commands (:mod:`.labels`).

Figures, per model:

- **confusion matrix**: rows the driver's label (forward, left, right, stopped), columns the
  model's command (forward, left, right, stop: a fail-safe refusal).
- **agreement**: the share of frames where the driver moved (forward, left or right) and the
  model commanded the same. Stopped frames are left out: standing still is not an action the
  policy has.
- **unsafe rate**: the share of all labelled frames, stopped ones included, where the model
  commands forward and the driver turned or stopped.
- **label-free**: mirror consistency (the image flipped left-right, with its mirrored
  intrinsics, gives the mirrored command; exact ties are counted apart) and command flips per
  second (changes of the model's command between consecutive frames).
- **latency** per pipeline stage (read, convert, preprocess, infer, total), p50 / p99.

**Intervals** are block-bootstrap intervals (:mod:`.stats`: why, and how); with two models the
comparison is paired on the same frames and blocks. Fewer than ``MIN_BLOCKS`` blocks give a note
that the intervals are rough.
"""

from __future__ import annotations

import gc
import math
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from sim2real.contracts.actions import ACTIONS, FORWARD, MIRROR, choose
from sim2real.contracts.manifest import write_json_atomic
from sim2real.recordings.bags import BagError, Recording, bag_sha256
from sim2real.recordings.labels import LABELS, STOPPED
from sim2real.recordings.settings import RecordingSettings
from sim2real.recordings.stats import Frames, block_bootstrap, flips, ratio
from sim2real.settings import option

COMMANDS: tuple[str, ...] = (*ACTIONS, "stop")   # what a model can command: an action, or a fail-safe stop
STOP = len(ACTIONS)
MIN_BLOCKS = 10
THUMB_WIDTH = 96
KEEP_CANDIDATES = 400

@dataclass(frozen=True)
class ValidateSettings(RecordingSettings):
    """Everything ``sim2real validate`` takes; its CLI flags are derived from these fields."""

    model: tuple[str, ...] = option((), "model with its manifest; give it twice (or --baseline) for a paired "
                                        "comparison, the first one the candidate", required=True)
    baseline: str | None = option(None, "a second model to compare with the first on the same frames")
    params_file: str | None = option(None, "the node's ROS 2 parameters file: validate with the robot's "
                                           "parameters (flags given here win over it)")
    backend: str | None = option(None, "inference backend: auto, onnxruntime, tensorrt (default auto)")
    max_invalid_fraction: float | None = option(None, "refuse an image with more no-return pixels than this, as "
                                                      "the node does (default 0.5)")
    block_s: float = option(5.0, "block length in seconds for the block bootstrap", flag="--block", metavar="S")
    resamples: int = option(2000, "bootstrap resamples")
    seed: int = option(0, "bootstrap seed")
    json: str | None = option(None, "write the JSON result here")
    report: str | None = option(None, "write the HTML report (frames where model and driver disagree) here")
    thumbnails: int = option(24, "most disagreeing frames shown in the report")
    min_agreement: float | None = option(None, "exit 1 when the (first) model's agreement is below this")
    max_unsafe: float | None = option(None, "exit 1 when the (first) model's unsafe rate is above this")

    def models(self) -> list[str]:
        return [*self.model, *([self.baseline] if self.baseline else [])]

    def check(self) -> None:
        super().check()
        if not 1 <= len(self.models()) <= 2:
            raise ValueError(f"validate takes one model, or two to compare (--model twice, or --baseline); "
                             f"got {len(self.models())}")
        for path in self.models():
            if not Path(path).exists():
                raise FileNotFoundError(f"model not found: {path}")
        if not (math.isfinite(self.block_s) and self.block_s > 0):
            raise ValueError(f"--block must be a positive number of seconds, got {self.block_s}")
        if self.resamples < 100:
            raise ValueError(f"--resamples must be at least 100, got {self.resamples}")
        if self.thumbnails < 0:
            raise ValueError(f"--thumbnails must be ≥ 0, got {self.thumbnails}")
        for name in ("min_agreement", "max_unsafe"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"--{name.replace('_', '-')} must be a fraction between 0 and 1, got {value}")
        for out in (self.json, self.report):
            if out:
                _check_writable(Path(out))


def _check_writable(out: Path) -> None:
    """Refuse, before any work, an output file that could not be written at the end."""
    if out.is_dir():
        raise ValueError(f"output {out} is a folder")
    existing = out.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"output {out} cannot be written: {existing} is not a writable folder")


def node_params(settings: ValidateSettings, model: str):
    """The node's parameters for ``model``: defaults, then ``--params-file``, then the flags."""
    from sim2real.runtime.node import NodeParams
    from sim2real.runtime.params_file import read_params_file

    values = read_params_file(settings.params_file) if settings.params_file else {}
    for name in ("backend", "max_invalid_fraction"):
        if getattr(settings, name) is not None:
            values[name] = getattr(settings, name)
    values["camera_info_topic"] = settings.camera_info_topic
    if settings.intrinsics:
        from sim2real.runtime.cli import _intrinsics

        values.update(_intrinsics(settings.intrinsics))
    values["model_path"] = str(model)
    params = NodeParams(**values)
    params.validate()
    return params


class _Model:
    """One model run through the node's pipeline over every frame."""

    def __init__(self, path: str, settings: ValidateSettings):
        from sim2real.runtime.node import DepthToTwist, LatencyStats
        from sim2real.runtime.policy import ModelPolicy

        self.path = path
        self.params = node_params(settings, path)
        self.policy = ModelPolicy(path, backend=self.params.backend)
        if self.policy.isa_note:
            print(f"sim2real validate: note: {self.policy.isa_note}", file=sys.stderr)
        self.events: list[str] = []
        self._make = lambda: DepthToTwist(self.policy, self.params, lambda level, msg: self._event(msg))
        self.pipeline = self._make()
        self.stats = LatencyStats(stages=("read", "convert", "preprocess", "infer", "total"), window=10**7)
        self.mirror_same = self.mirror_frames = self.ties = 0
        self.sources: set[str] = set()

    def _event(self, message: str) -> None:
        if message not in self.events and len(self.events) < 20:
            self.events.append(message)

    def new_recording(self) -> None:
        self.pipeline = self._make()     # nothing carries over between recordings (watchdog, camera)

    def run(self, image, read_ms: float) -> int:
        """The command index (0..2 an action, STOP a fail-safe stop) for one image."""
        from sim2real.runtime.ros_image import decode_depth

        pipeline = self.pipeline
        if image.camera_info is not None and pipeline.camera.explicit is None:
            pipeline.camera.update(image.camera_info)
        start = time.perf_counter()
        pipeline.handle(image.msg)
        end = time.perf_counter()
        self.sources.add(pipeline.camera.source)
        if pipeline.last_action is None:
            return STOP
        self.stats.add({"read": read_ms, **pipeline.last_timing_ms, "total": (end - start) * 1e3 + read_ms})
        action = pipeline.last_action
        if pipeline.last_tie:
            self.ties += 1
            return action
        depth = decode_depth(image.msg)
        height, width = depth.shape
        intrinsics = pipeline.camera.for_image(width, height)
        mirrored = self.policy.mapping(intrinsics.mirrored() if intrinsics else None, width, height)
        x, _ = mirrored(np.ascontiguousarray(depth[:, ::-1]))
        flipped, tie = choose(self.policy.infer(x[None]))
        self.mirror_frames += 1
        self.mirror_same += int(not tie and flipped == MIRROR[action])
        return action


def _thumbnail(msg) -> np.ndarray:
    from sim2real.runtime.ros_image import decode_depth

    depth = decode_depth(msg)
    step = max(1, math.ceil(depth.shape[1] / THUMB_WIDTH))
    return np.asarray(depth[::step, ::step], np.float16)


def validate(settings: ValidateSettings) -> dict:
    """Run the models over every recording; return the result (and write ``json`` / ``report``)."""
    from sim2real.machine import label as machine_label
    from sim2real.progress import progress_bar

    settings.check()
    ranges = settings.ranges()
    models = [_Model(path, settings) for path in settings.models()]
    gc.collect()
    gc.freeze()
    frames = Frames([], [], [], [])
    blocks: list[int] = []
    recordings, durations, candidates = [], [], []
    block_base = 0
    seen, stride = 0, 1
    for r, path in enumerate(settings.bags):
        with Recording(path, settings.topics(), settings.labelling(), need_camera_info=not settings.intrinsics,
                       image_time=settings.image_time) as recording:
            for model in models:
                model.new_recording()
            counts = {"images": 0, "labelled": 0, "stopped": 0, "unlabelled": 0, "excluded": 0}
            first = last = None
            with progress_bar(total=recording.n_images, unit="img", desc=f"validate {recording.name}",
                              disable=settings.no_progress) as bar:
                read_start = time.perf_counter()
                for image in recording.images():
                    read_ms = (time.perf_counter() - read_start) * 1e3
                    t_s = recording.seconds(image.t_ns)
                    counts["images"] += 1
                    bar.update(1)
                    first = t_s if first is None else first
                    last = t_s
                    if any(rng.covers(recording.name, t_s) for rng in ranges):
                        counts["excluded"] += 1
                        read_start = time.perf_counter()
                        continue
                    label = recording.commands.label_at(image.t_ns)
                    commands = [model.run(image, read_ms) for model in models]
                    counts["unlabelled" if label is None else "stopped" if label == STOPPED else "labelled"] += 1
                    frames.recording.append(r)
                    frames.t_s.append(t_s)
                    frames.label.append(-1 if label is None else label)
                    frames.commands.append(commands)
                    blocks.append(block_base + int((t_s - first) // settings.block_s))
                    wrong = label is not None and ((label != STOPPED and commands[0] != label)
                                                   or (label == STOPPED and commands[0] == FORWARD))
                    if wrong and settings.report and settings.thumbnails:
                        if seen % stride == 0:       # every stride-th one: an even spread over all recordings
                            candidates.append((r, t_s, label, commands, _thumbnail(image.msg)))
                            if len(candidates) == KEEP_CANDIDATES:
                                candidates, stride = candidates[::2], 2 * stride
                        seen += 1
                    read_start = time.perf_counter()
            durations.append(max(0.0, (last or 0.0) - (first or 0.0)))
            block_base = (max(blocks) + 1) if blocks else block_base
            recordings.append({"bag": str(path), "name": recording.name, "sha256": bag_sha256(Path(path)),
                               "duration_s": round(durations[-1], 3), **counts,
                               "images_s": [round(first or 0.0, 3), round(last or 0.0, 3)],
                               "commands_s": recording.command_span(),
                               "camera_intrinsics": sorted(models[0].sources)})
    labelled = [k for k in frames.label if k >= 0]
    if not any(k != STOPPED for k in labelled):
        raise BagError(f"no frame left to validate on: of {sum(r['images'] for r in recordings)} images, "
                       f"{sum(r['excluded'] for r in recordings)} excluded, {sum(r['unlabelled'] for r in recordings)} "
                       f"without a command within --max-age, {sum(r['stopped'] for r in recordings)} stopped"
                       + _clock_hint(recordings))
    stats = block_bootstrap(np.array(blocks), frames, len(models), settings.resamples, settings.seed)
    flips_per_model, driver_flips = flips(frames, len(models), durations)
    label_arr, commands_arr = np.array(frames.label), np.array(frames.commands).reshape(len(frames.label), -1)
    recording_arr = np.array(frames.recording)
    for r, entry in enumerate(recordings):
        moving = (recording_arr == r) & (label_arr >= 0) & (label_arr != STOPPED)
        entry["agreement"] = [ratio(float((commands_arr[moving, m] == label_arr[moving]).sum()), float(moving.sum()))
                              for m in range(len(models))]
    results = []
    for m, model in enumerate(models):
        matrix = np.zeros((len(LABELS), len(COMMANDS)), np.int64)
        np.add.at(matrix, (label_arr[label_arr >= 0], commands_arr[label_arr >= 0, m]), 1)
        results.append({
            "model": model.path, "model_sha256": model.policy.sha256, "backend": model.policy.engine.name,
            "confusion": {"rows (driver)": list(LABELS), "columns (model)": list(COMMANDS),
                          "matrix": matrix.tolist()},
            "recall": {name: ratio(matrix[k, k], matrix[k].sum()) for k, name in enumerate(ACTIONS)},
            **stats["figures"][m],
            "mirror_consistency": {"value": ratio(model.mirror_same, model.mirror_frames),
                                   "frames": model.mirror_frames, "left_right_ties": model.ties},
            "command_flips_per_s": flips_per_model[m],
            "failsafe_stops": int((commands_arr[:, m] == STOP).sum()),
            "node_log": model.events,
            "latency_ms": model.stats.summary()})
    result = {
        "recordings": recordings,
        "frames": {"images": sum(r["images"] for r in recordings), "labelled": len(labelled),
                   "moving": stats["moving_frames"], "stopped": sum(r["stopped"] for r in recordings),
                   "unlabelled": sum(r["unlabelled"] for r in recordings),
                   "excluded": sum(r["excluded"] for r in recordings)},
        "labels": {name: int(sum(1 for k in labelled if k == i)) for i, name in enumerate(LABELS)},
        "driver_flips_per_s": driver_flips,
        "models": results,
        "bootstrap": {"method": "non-overlapping block bootstrap, percentile interval", "block_s": settings.block_s,
                      "blocks": stats["blocks"], "resamples": settings.resamples, "seed": settings.seed,
                      **({"note": f"fewer than {MIN_BLOCKS} blocks ({stats['blocks']}): the intervals are rough"}
                         if stats["blocks"] < MIN_BLOCKS else {})},
        "settings": _settings_dict(settings),
        "machine": machine_label(),
    }
    if "comparison" in stats:
        result["comparison"] = {"a": models[0].path, "b": models[1].path, **stats["comparison"]}
    result["gate"] = gate_verdict(result, settings)
    if settings.json:
        write_json_atomic(settings.json, result)
    if settings.report:
        from sim2real.recordings.report import write_report

        write_report(result, Path(settings.report), _spread(candidates, settings.thumbnails), seen)
    return result


def _clock_hint(recordings: list[dict]) -> str:
    """When no image found a command: where the commands and the images lie in time (clocks that differ)."""
    if any(r["labelled"] or r["stopped"] for r in recordings):
        return ""
    r = recordings[0]
    return (f" (in {r['name']}, commands from {r['commands_s'][0]:g} s to {r['commands_s'][1]:g} s and images "
            f"from {r['images_s'][0]:g} s to {r['images_s'][1]:g} s after its start: are both stamped by one clock?)")


def _settings_dict(settings: ValidateSettings) -> dict:
    from sim2real.settings import to_dict

    return to_dict(replace(settings, no_progress=False))


def _spread(candidates: list, count: int) -> list:
    """At most ``count`` of the candidates, spread evenly over the recording."""
    if len(candidates) <= count:
        return candidates
    picks = np.linspace(0, len(candidates) - 1, count).round().astype(int)
    return [candidates[i] for i in sorted(set(picks.tolist()))]


def gate_verdict(result: dict, settings: ValidateSettings) -> dict:
    """Whether the first model passes ``--min-agreement`` and ``--max-unsafe`` (point estimates)."""
    first = result["models"][0]
    failures = []
    agreement, unsafe = first["agreement"], first["unsafe_rate"]
    if settings.min_agreement is not None and (agreement["value"] or 0.0) < settings.min_agreement:
        failures.append(f"agreement {agreement['value']:.3f} (95% CI {_ci(agreement)}) is below --min-agreement "
                        f"{settings.min_agreement}")
    if settings.max_unsafe is not None and unsafe["value"] is not None and unsafe["value"] > settings.max_unsafe:
        failures.append(f"unsafe rate {unsafe['value']:.3f} (95% CI {_ci(unsafe)}) is above --max-unsafe "
                        f"{settings.max_unsafe}")
    return {"min_agreement": settings.min_agreement, "max_unsafe": settings.max_unsafe,
            "passed": not failures, "failures": failures}


def _ci(figure: dict) -> str:
    ci = figure.get("ci95")
    return f"{ci[0]:.2f}-{ci[1]:.2f}" if ci else "n/a"


def summary_line(result: dict) -> str:
    """One line: agreement and unsafe rate of each model (and the difference), with intervals."""
    parts = []
    for name, model in zip("ab", result["models"]):
        a, u = model["agreement"], model["unsafe_rate"]
        parts.append(f"{name}: agreement {a['value']:.3f} (95% CI {_ci(a)}) over {a['frames']} frames, "
                     f"unsafe {u['value']:.3f} (95% CI {_ci(u)})")
    if "comparison" in result:
        d = result["comparison"]["agreement_difference"]
        parts.append(f"a − b agreement {d['value']:+.3f} (95% CI {_ci(d)}, paired)")
    return "; ".join(parts) + f"; {result['bootstrap']['blocks']} blocks of {result['bootstrap']['block_s']:g} s"
