"""Pinhole camera geometry, and the camera contract between a model and the camera that feeds it.

Two halves, both numpy only:

- **Simulation geometry** (``vfov_deg``, ``ray_directions``, ``camera_rotation``): every backend
  renders the same image grid with these.
- **The camera contract.** A model is trained for one field of view (:class:`CameraContract`,
  recorded inside the model file and in its manifest). A camera is described by its intrinsics
  (:class:`Intrinsics`: ``sensor_msgs/CameraInfo``'s size, fx, fy, cx, cy). ``preprocessing``
  maps any camera's image onto the model's field of view through these intrinsics: a wider image
  is cropped, a narrower one fills the centre and the part of the view it does not cover reaches
  the model as "no data". Nothing is ever squashed: both axes keep the camera's own angles.

Coordinates follow ``sensor_msgs/CameraInfo`` (and OpenCV): pixel ``(u, v)`` has its centre at
``(u, v)``, so a camera whose principal point is the image centre has ``cx = (width - 1) / 2``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

CAMERA_CONTRACT_VERSION = 1
DEFAULT_MIN_OVERLAP = 0.5


def vfov_deg(width: int, height: int, hfov_deg: float) -> float:
    """Vertical field of view of a pinhole camera with square pixels."""
    fx = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    return math.degrees(2.0 * math.atan((height / 2.0) / fx))


def ray_directions(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """Unit rays through pixel centres in the camera's body frame (x forward, y left, z up).

    Returns ``(height, width, 3)``; row 0 is the top of the image, column 0 its left edge.
    """
    fx = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
    u = (np.arange(width) + 0.5 - width / 2.0) / fx
    v = (np.arange(height) + 0.5 - height / 2.0) / fx
    uu, vv = np.meshgrid(u, v)
    rays = np.stack([np.ones_like(uu), -uu, -vv], axis=-1)
    return rays / np.linalg.norm(rays, axis=-1, keepdims=True)


def camera_rotation(yaw: float, pitch_down: float) -> np.ndarray:
    """World-from-camera rotation for a camera at heading ``yaw`` tilted down by ``pitch_down`` (radians)."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    cp, sp = math.cos(pitch_down), math.sin(pitch_down)
    rz = np.array([[cy, -sy, 0.0], [sy, cy, 0.0], [0.0, 0.0, 1.0]])
    ry = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
    return rz @ ry


class CameraError(ValueError):
    """Intrinsics or a camera block that cannot describe a camera; the message says which value."""


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise CameraError(f"camera {name} must be a whole number of pixels ≥ 1, got {value!r}")
    return int(value)


def _finite(name: str, value: object, positive: bool = False) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CameraError(f"camera {name} must be a number, got {value!r}") from None
    if not math.isfinite(number) or (positive and number <= 0):
        raise CameraError(f"camera {name} must be a finite number{' > 0' if positive else ''}, got {value!r}")
    return number


@dataclass(frozen=True)
class Intrinsics:
    """A depth image's pinhole geometry in pixels (``sensor_msgs/CameraInfo``'s K and size)."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self):
        object.__setattr__(self, "width", _positive_int("width", self.width))
        object.__setattr__(self, "height", _positive_int("height", self.height))
        for name in ("fx", "fy"):
            object.__setattr__(self, name, _finite(name, getattr(self, name), positive=True))
        for name in ("cx", "cy"):
            object.__setattr__(self, name, _finite(name, getattr(self, name)))

    @classmethod
    def from_fov(cls, width: int, height: int, hfov_deg: float, vfov_deg: float | None = None) -> "Intrinsics":
        """A centred camera ``hfov_deg`` wide; square pixels unless ``vfov_deg`` is given."""
        hfov = _finite("hfov_deg", hfov_deg, positive=True)
        if hfov >= 180:
            raise CameraError(f"camera hfov_deg must be below 180, got {hfov_deg!r}")
        fx = (width / 2.0) / math.tan(math.radians(hfov) / 2.0)
        fy = fx if vfov_deg is None else (height / 2.0) / math.tan(math.radians(float(vfov_deg)) / 2.0)
        return cls(width, height, fx, fy, (width - 1) / 2.0, (height - 1) / 2.0)

    @classmethod
    def from_camera_info(cls, msg) -> "Intrinsics":
        """From a ``sensor_msgs/CameraInfo`` (rclpy or rosbags message, or anything with its fields).

        The intrinsics of the published image (REP 104): a region of interest shifts the principal
        point, binning divides every value. An uncalibrated CameraInfo (K all zero) is refused.
        """
        k = getattr(msg, "k", None)
        if k is None:
            k = getattr(msg, "K", None)
        k = np.asarray(k if k is not None else [], dtype=np.float64).ravel()
        if k.size != 9:
            raise CameraError(f"CameraInfo K has {k.size} values, expected 9")
        if k[0] == 0 or k[4] == 0:
            raise CameraError("CameraInfo is uncalibrated (K has fx = 0 or fy = 0)")
        bx = max(int(getattr(msg, "binning_x", 0) or 0), 1)
        by = max(int(getattr(msg, "binning_y", 0) or 0), 1)
        fx, fy, cx, cy = k[0], k[4], k[2], k[5]
        width, height = int(msg.width), int(msg.height)
        roi = getattr(msg, "roi", None)
        if roi is not None and int(getattr(roi, "width", 0) or 0) > 0 and int(getattr(roi, "height", 0) or 0) > 0:
            cx, cy = cx - int(roi.x_offset), cy - int(roi.y_offset)
            width, height = int(roi.width), int(roi.height)
        return cls(width // bx, height // by, fx / bx, fy / by, (cx + 0.5) / bx - 0.5, (cy + 0.5) / by - 0.5)

    @classmethod
    def from_values(cls, values) -> "Intrinsics":
        """From ``(width, height, fx, fy, cx, cy)`` (a list, or a comma-separated string)."""
        if isinstance(values, str):
            values = [part.strip() for part in values.split(",")]
        values = list(values)
        if len(values) != 6:
            raise CameraError(f"intrinsics need 6 values WIDTH,HEIGHT,FX,FY,CX,CY, got {len(values)}")
        try:
            width, height = int(float(values[0])), int(float(values[1]))
        except (TypeError, ValueError):
            raise CameraError(f"intrinsics width and height must be whole numbers, got {values[:2]}") from None
        if float(values[0]) != width or float(values[1]) != height:
            raise CameraError(f"intrinsics width and height must be whole numbers, got {values[:2]}")
        return cls(width, height, *(_finite(n, v) for n, v in zip(("fx", "fy", "cx", "cy"), values[2:])))

    def mirrored(self) -> "Intrinsics":
        """The intrinsics of this camera's image flipped left-right."""
        return Intrinsics(self.width, self.height, self.fx, self.fy, (self.width - 1) - self.cx, self.cy)

    def fov_deg(self) -> tuple[float, float]:
        """(horizontal, vertical) field of view in degrees (edge to edge)."""
        h = math.atan((self.cx + 0.5) / self.fx) + math.atan((self.width - 0.5 - self.cx) / self.fx)
        v = math.atan((self.cy + 0.5) / self.fy) + math.atan((self.height - 0.5 - self.cy) / self.fy)
        return math.degrees(h), math.degrees(v)

    def to_list(self) -> list[float]:
        return [self.width, self.height, self.fx, self.fy, self.cx, self.cy]

    def describe(self) -> str:
        h, v = self.fov_deg()
        return (f"{self.width}x{self.height}, {h:.1f}°x{v:.1f}° (fx {self.fx:.1f}, fy {self.fy:.1f}, "
                f"cx {self.cx:.1f}, cy {self.cy:.1f})")


@dataclass(frozen=True)
class CameraContract:
    """The camera a model was trained for: the field of view its input spans, edge to edge.

    ``name``, ``width`` and ``height`` describe the simulated camera (for people); ``hfov_deg`` and
    ``vfov_deg`` are what the mapping uses. ``min_overlap`` is the least share of the field of
    view, along each axis, that a camera's image must cover before the runtime refuses it.
    """

    hfov_deg: float
    vfov_deg: float
    name: str = ""
    width: int = 0
    height: int = 0
    min_overlap: float = DEFAULT_MIN_OVERLAP
    version: int = CAMERA_CONTRACT_VERSION

    def __post_init__(self):
        for name in ("hfov_deg", "vfov_deg"):
            value = _finite(name, getattr(self, name), positive=True)
            if value >= 180:
                raise CameraError(f"camera {name} must be below 180, got {value}")
            object.__setattr__(self, name, value)
        if not isinstance(self.name, str):
            raise CameraError(f"camera name must be text, got {self.name!r}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise CameraError(f"camera {name} must be a whole number ≥ 0, got {value!r}")
        overlap = _finite("min_overlap", self.min_overlap)
        if not 0.0 < overlap <= 1.0:
            raise CameraError(f"camera min_overlap must be within (0, 1], got {self.min_overlap!r}")
        object.__setattr__(self, "min_overlap", overlap)
        if self.version != CAMERA_CONTRACT_VERSION:
            raise CameraError(f"camera block version {self.version!r} is not supported (this sim2real reads "
                              f"version {CAMERA_CONTRACT_VERSION}): re-export the model with this sim2real")

    @classmethod
    def for_camera(cls, width: int, height: int, hfov_deg: float, name: str = "",
                   min_overlap: float = DEFAULT_MIN_OVERLAP) -> "CameraContract":
        """The contract of a square-pixel camera ``width`` × ``height`` pixels, ``hfov_deg`` wide."""
        return cls(float(hfov_deg), vfov_deg(width, height, hfov_deg), name, int(width), int(height),
                   min_overlap)

    def tan_half(self) -> tuple[float, float]:
        """tan of half the (horizontal, vertical) field of view."""
        return math.tan(math.radians(self.hfov_deg) / 2.0), math.tan(math.radians(self.vfov_deg) / 2.0)

    def assumed_intrinsics(self, width: int, height: int) -> Intrinsics:
        """What an image without intrinsics is taken to be: this horizontal field of view, centred,
        square pixels (so an image of another shape is cropped or bordered, never squashed)."""
        return Intrinsics.from_fov(width, height, self.hfov_deg)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> "CameraContract":
        if not isinstance(data, dict):
            raise CameraError(f"camera block must be a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CameraError(f"unknown camera key(s) {unknown}")
        missing = sorted({"hfov_deg", "vfov_deg"} - set(data))
        if missing:
            raise CameraError(f"camera block lacks {', '.join(missing)}")
        return cls(**data)
