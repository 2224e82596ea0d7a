"""What turns recordings into labelled frames: the settings ``validate`` and ``ingest`` share.

Each verb's settings dataclass extends :class:`RecordingSettings`; their flags are derived from
the fields (:mod:`sim2real.settings`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from sim2real.contracts.actions import (
    ANGULAR_THRESHOLD_RADPS,
    COMMAND_MAX_AGE_S,
    LINEAR_THRESHOLD_MPS,
    REACTION_LAG_S,
)
from sim2real.recordings.bags import IMAGE_TIMES, Topics
from sim2real.recordings.labels import Labelling, TimeRange
from sim2real.settings import option


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
        return Labelling(self.angular_threshold, self.linear_threshold, self.lag_s, self.max_age_s)

    def topics(self) -> Topics:
        return Topics(self.image_topic, self.camera_info_topic, self.cmd_topic)

    def ranges(self) -> list[TimeRange]:
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
