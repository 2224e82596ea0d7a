"""What turns recordings into labelled frames: the settings ``validate`` and ``ingest`` share.

Each verb's settings dataclass extends :class:`RecordingSettings`; their flags are derived from
the fields (:mod:`sim2real.settings`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sim2real.contracts.actions import (
    ANGULAR_THRESHOLD_RADPS,
    COMMAND_MAX_AGE_S,
    LINEAR_THRESHOLD_MPS,
    REACTION_LAG_S,
)
from sim2real.settings import option

if TYPE_CHECKING:
    from sim2real.recordings.bags import Topics
    from sim2real.recordings.labels import Labelling, TimeRange

# an image's time: its header stamp, or when the recorder logged it (a driver whose clock is off)
IMAGE_TIMES = ("header", "log")


@dataclass(frozen=True)
class RecordingSettings:
    """What turns recordings into labelled frames: shared by ``validate`` and ``ingest``."""

    bags: tuple[str, ...] = option((), "recordings: rosbag2 folders or single .mcap / .db3 files",
                                   positional=True, metavar="BAG")
    image_topic: str = option("/camera/depth/image_raw", "depth image topic (sensor_msgs/Image)")
    camera_info_topic: str = option("/camera/depth/camera_info",
                                    "CameraInfo topic: the latest one before each image maps it onto the model's "
                                    "field of view")
    cmd_topic: str = option("/cmd_vel", "the driver's commands (geometry_msgs/Twist or TwistStamped)")
    intrinsics: str | None = option(None, "the camera's intrinsics, used instead of the bags' CameraInfo",
                                    metavar="W,H,FX,FY,CX,CY")
    image_time: str = option("header", "time an image by its header stamp (capture) or its log time (arrival)",
                             choices=IMAGE_TIMES)
    angular_threshold: float = option(ANGULAR_THRESHOLD_RADPS, "a command with |angular.z| at or above this (rad/s) is a turn",
                                      metavar="RAD_S")
    linear_threshold: float = option(LINEAR_THRESHOLD_MPS, "a command that is not a turn, with linear.x at or above this (m/s), "
                                           "is forward; below: stopped", metavar="M_S")
    lag_s: float = option(REACTION_LAG_S, "the driver's reaction time: an image's label is the command in effect this many "
                               "seconds after it", flag="--lag", metavar="S")
    max_age_s: float = option(COMMAND_MAX_AGE_S, "a command older than this (s) at that time labels nothing (the joystick "
                                   "went quiet)", flag="--max-age", metavar="S")
    exclude: tuple[str, ...] = option((), "leave out this time range, seconds from the recording's start (a "
                                          "driver's mistake); BAG@START:END only in the bag of that name; "
                                          "repeatable", metavar="[BAG@]START:END")
    no_progress: bool = option(False, "no progress bar")

    def labelling(self) -> Labelling:
        from sim2real.recordings.labels import Labelling

        return Labelling(self.angular_threshold, self.linear_threshold, self.lag_s, self.max_age_s)

    def topics(self) -> Topics:
        from sim2real.recordings.bags import Topics

        return Topics(self.image_topic, self.camera_info_topic, self.cmd_topic)

    def ranges(self) -> list[TimeRange]:
        from sim2real.recordings.labels import TimeRange

        return [TimeRange.parse(text) for text in self.exclude]

    def check(self) -> None:
        """One-line errors for values that cannot mean anything, before any work."""
        if not self.bags:
            raise ValueError("no recording given")
        for path in self.bags:
            if not Path(path).exists():
                raise FileNotFoundError(f"bag not found: {path}")
        resolved = [Path(path).resolve() for path in self.bags]
        if len(set(resolved)) != len(resolved):
            raise ValueError("a recording is given twice: its frames would count twice")
        for name in ("angular_threshold", "linear_threshold", "lag_s", "max_age_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number ≥ 0, got {value!r}")
        if self.angular_threshold <= 0 or self.max_age_s <= 0:
            raise ValueError("angular_threshold and max_age must be above 0")
        if self.image_time not in IMAGE_TIMES:
            raise ValueError(f"image_time must be one of {', '.join(IMAGE_TIMES)}, got {self.image_time!r}")
        if not self.image_topic or not self.cmd_topic:
            raise ValueError("the image and command topics must not be empty")
        self.ranges()


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
