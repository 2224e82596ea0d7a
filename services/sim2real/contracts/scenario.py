"""The scenario file: one YAML that every simulator backend understands.

A scenario names the arena, obstacles, robot, camera, sensor noise, randomization ranges and
episode rules. Ranges are ``[low, high]`` pairs sampled uniformly per scene (or per image, for the
camera). Built-in scenarios live in ``contracts/scenarios/<name>.yaml``; a path to a user's file
works wherever a name does. Unknown keys and bad values are errors that name the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sim2real.contracts.manifest import sha256_bytes

BUILTIN_DIR = Path(__file__).with_name("scenarios")

Range = tuple[float, float]
ShapeName = Literal["box", "cylinder", "pole", "wall"]


class ScenarioError(ValueError):
    """A scenario that cannot be loaded; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_range(name: str, value: Range, low: float | None = None, high: float | None = None) -> None:
    lo, hi = value
    if lo > hi:
        raise ValueError(f"{name}: low {lo} is above high {hi}")
    if low is not None and lo < low:
        raise ValueError(f"{name}: {lo} is below {low}")
    if high is not None and hi > high:
        raise ValueError(f"{name}: {hi} is above {high}")


class Partitions(_Strict):
    """Interior wall layout: straight partitions that stand out from a random outer wall into the room.

    Each partition starts at an outer wall, runs perpendicular to it for a length drawn from
    ``length_frac`` (a fraction of the room's depth in that direction, so a doorway-sized gap always
    remains), at a position along the wall drawn from ``position_frac`` (0 = one corner, 1 = the other).
    """

    count: tuple[int, int] = (0, 0)
    length_frac: Range = (0.2, 0.45)
    position_frac: Range = (0.2, 0.8)
    thickness_m: float = Field(0.1, gt=0)

    @model_validator(mode="after")
    def _ranges(self) -> "Partitions":
        _check_range("count", self.count, 0)
        _check_range("length_frac", self.length_frac, 0.05, 0.6)
        _check_range("position_frac", self.position_frac, 0.0, 1.0)
        return self


class Arena(_Strict):
    """A rectangular floor centred on the origin, closed by walls.

    ``size_range_m`` (``[[x_low, x_high], [y_low, y_high]]``) draws each side per scene instead of
    the fixed ``size_m``; ``partitions`` adds interior walls.
    """

    size_m: tuple[float, float] = (8.0, 8.0)
    size_range_m: tuple[Range, Range] | None = None
    wall_height_m: float = Field(0.6, gt=0)
    wall_thickness_m: float = Field(0.1, gt=0)
    partitions: Partitions = Partitions()

    @model_validator(mode="after")
    def _positive(self) -> "Arena":
        if min(self.size_m) < 2.0:
            raise ValueError("size_m: each side must be at least 2 m")
        if self.size_range_m is not None:
            for axis, side in zip("xy", self.size_range_m):
                _check_range(f"size_range_m ({axis})", side, 2.0)
        return self


class Obstacles(_Strict):
    """Obstacles drawn per scene: count, shape, size, pose and spacing all come from ranges.

    Shapes: ``box`` (half-extents from ``size_m``), ``cylinder`` (radius from ``size_m``), ``pole``
    (a thin cylinder, radius from ``pole_radius_m``) and ``wall`` (a free-standing wall segment,
    full length ``wall_length_m``, thickness ``wall_thickness_m``). ``shape_weights`` (same order as
    ``shapes``) skews the draw; without it shapes are equally likely. ``min_gap_m`` is a number or
    a ``[low, high]`` range drawn per scene.
    """

    count: tuple[int, int] = (6, 12)
    shapes: tuple[ShapeName, ...] = ("box", "cylinder")
    shape_weights: tuple[float, ...] | None = None
    size_m: Range = (0.15, 0.5)
    height_m: Range = (0.3, 1.0)
    pole_radius_m: Range = (0.02, 0.05)
    wall_length_m: Range = (0.8, 2.0)
    wall_thickness_m: Range = (0.05, 0.15)
    yaw_deg: Range = (-180.0, 180.0)
    min_gap_m: float | Range = 0.5
    start_clearance_m: float = Field(0.8, ge=0)

    @model_validator(mode="after")
    def _ranges(self) -> "Obstacles":
        if not self.shapes:
            raise ValueError("shapes: list at least one shape")
        if self.shape_weights is not None:
            if len(self.shape_weights) != len(self.shapes):
                raise ValueError(f"shape_weights: {len(self.shape_weights)} weights for {len(self.shapes)} shapes")
            if min(self.shape_weights) < 0 or sum(self.shape_weights) <= 0:
                raise ValueError("shape_weights: weights must be non-negative and not all zero")
        _check_range("count", self.count, 0)
        _check_range("size_m", self.size_m, 0.02)
        _check_range("height_m", self.height_m, 0.05)
        _check_range("pole_radius_m", self.pole_radius_m, 0.005)
        _check_range("wall_length_m", self.wall_length_m, 0.1)
        _check_range("wall_thickness_m", self.wall_thickness_m, 0.01)
        _check_range("yaw_deg", self.yaw_deg, -180.0, 180.0)
        if isinstance(self.min_gap_m, tuple):
            _check_range("min_gap_m", self.min_gap_m, 0.0)
        elif self.min_gap_m < 0:
            raise ValueError(f"min_gap_m: {self.min_gap_m} is below 0")
        return self


class StartPose(_Strict):
    """Where the robot starts an episode (and where datagen's free-space poses are drawn).

    ``x_m`` / ``y_m`` are ranges in metres (clipped to the arena; absent = the whole arena) and
    ``yaw_deg`` the heading range. The pose also keeps ``obstacles.start_clearance_m`` from every surface.
    """

    x_m: Range | None = None
    y_m: Range | None = None
    yaw_deg: Range = (-180.0, 180.0)

    @model_validator(mode="after")
    def _ranges(self) -> "StartPose":
        for name in ("x_m", "y_m"):
            if getattr(self, name) is not None:
                _check_range(name, getattr(self, name))
        _check_range("yaw_deg", self.yaw_deg, -180.0, 180.0)
        return self


class Robot(_Strict):
    """A differential-drive base; the footprint is a cylinder of ``radius_m``."""

    radius_m: float = Field(0.18, gt=0)
    height_m: float = Field(0.15, gt=0)
    mass_kg: float = Field(4.0, gt=0)
    wheel_radius_m: float = Field(0.05, gt=0)
    wheel_separation_m: float = Field(0.30, gt=0)
    forward_speed_mps: float = Field(0.5, gt=0)
    turn_rate_radps: float = Field(0.5, gt=0)


class Camera(_Strict):
    """A forward-looking pinhole depth camera at the front of the robot."""

    width: int = Field(224, ge=16, le=1280)
    height: int = Field(224, ge=16, le=1024)
    hfov_deg: float = Field(87.0, gt=10, lt=170)
    mount_height_m: float = Field(0.25, gt=0)
    pitch_deg: float = Field(10.0, ge=-45, le=45, description="downward tilt")
    min_range_m: float = Field(0.1, gt=0)
    max_range_m: float = Field(5.0, gt=0)

    @model_validator(mode="after")
    def _range(self) -> "Camera":
        if self.min_range_m >= self.max_range_m:
            raise ValueError("min_range_m must be below max_range_m")
        return self


class Noise(_Strict):
    """Depth sensor model applied by every backend after rendering (``sim.sensors``), in this order:
    shadows, edge holes, stereo noise, quantisation, min/max range, dropout."""

    stereo_sigma_per_m2: float = Field(0.0, ge=0, description="std dev = k * z^2 (metres)")
    dropout: float = Field(0.0, ge=0, le=1, description="fraction of pixels read as invalid")
    edge_hole_prob: float = Field(0.0, ge=0, le=1,
                                  description="chance that a pixel on a depth edge reads invalid")
    edge_jump_m: float = Field(0.1, gt=0, description="depth step between neighbours that makes an edge")
    shadow_baseline_m: float = Field(0.0, ge=0, le=0.5,
                                     description="stereo baseline; pixels the second imager cannot see "
                                                 "read invalid (0 = no shadows)")
    quantization_m: float = Field(0.0, ge=0, le=0.5,
                                  description="depth step at 1 m (0 = none)")
    quantization_mode: Literal["depth", "disparity"] = Field(
        "disparity", description="'depth': a fixed step; 'disparity': the step grows with z^2 (stereo)")


# Bounds of each per-image range: (lowest low, highest high); None = unbounded.
_RANDOMIZATION_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "camera_height_m": (0.01, None),
    "camera_pitch_deg": (-45.0, 45.0),
    "camera_hfov_deg": (10.0, 170.0),
    "camera_roll_deg": (-20.0, 20.0),
    "camera_yaw_deg": (-20.0, 20.0),
    "camera_lateral_m": (-0.5, 0.5),
    "stereo_sigma_per_m2": (0.0, None),
    "dropout": (0.0, 1.0),
    "edge_hole_prob": (0.0, 1.0),
    "shadow_baseline_m": (0.0, 0.5),
    "quantization_m": (0.0, 0.5),
    "min_range_m": (0.0, None),
    "max_range_m": (0.0, None),
}


class Randomization(_Strict):
    """Per-image ranges; each replaces the camera's (or the noise section's) fixed value when present.

    ``camera_roll_deg``, ``camera_yaw_deg`` and ``camera_lateral_m`` are mounting jitter (nominal 0).
    ``hfov_step_deg`` rounds each drawn field of view to a multiple of itself so ray tables can be
    reused (0 = continuous).
    """

    camera_height_m: Range | None = None
    camera_pitch_deg: Range | None = None
    camera_hfov_deg: Range | None = None
    camera_roll_deg: Range | None = None
    camera_yaw_deg: Range | None = None
    camera_lateral_m: Range | None = None
    stereo_sigma_per_m2: Range | None = None
    dropout: Range | None = None
    edge_hole_prob: Range | None = None
    shadow_baseline_m: Range | None = None
    quantization_m: Range | None = None
    min_range_m: Range | None = None
    max_range_m: Range | None = None
    hfov_step_deg: float = Field(0.0, ge=0, le=10)

    @model_validator(mode="after")
    def _ranges(self) -> "Randomization":
        for name, (low, high) in _RANDOMIZATION_BOUNDS.items():
            value = getattr(self, name)
            if value is not None:
                _check_range(name, value, low, high)
        return self


class Expert(_Strict):
    """The privileged expert's rule: stop-and-turn when its path is blocked within ``stop_distance_m``."""

    stop_distance_m: float = Field(0.7, gt=0, description="free length needed ahead to go forward")
    corridor_margin_m: float = Field(0.05, ge=0, description="added to the robot radius each side")
    side_tie_m: float = Field(0.05, ge=0, description="|lateral offset| below which the freer side decides")


class Episode(_Strict):
    duration_s: float = Field(20.0, gt=0)
    control_hz: float = Field(10.0, gt=0, le=200)
    min_progress_m: float = Field(1.5, ge=0, description="net displacement needed for success")
    expert: Expert = Expert()


class Datagen(_Strict):
    """How datagen draws its images (evaluation ignores this section).

    ``forward_fraction`` sets the share of FORWARD labels; the rest is split evenly between LEFT and
    RIGHT, exactly over the dataset and within one image per shard (poses are redrawn until the
    expert's label fits). Absent = the natural mix of the pose sampler. ``images_per_world`` is how
    many images are taken in each sampled scene.
    """

    forward_fraction: float | None = Field(None, ge=0, le=1)
    images_per_world: int = Field(25, ge=1)


class Scenario(_Strict):
    name: str
    description: str = ""
    seed: int = 0
    arena: Arena = Arena()
    obstacles: Obstacles = Obstacles()
    robot: Robot = Robot()
    camera: Camera = Camera()
    noise: Noise = Noise()
    randomization: Randomization = Randomization()
    start_pose: StartPose = StartPose()
    episode: Episode = Episode()
    datagen: Datagen = Datagen()

    @model_validator(mode="after")
    def _camera_ranges(self) -> "Scenario":
        rnd, cam = self.randomization, self.camera
        min_hi = rnd.min_range_m[1] if rnd.min_range_m is not None else cam.min_range_m
        max_lo = rnd.max_range_m[0] if rnd.max_range_m is not None else cam.max_range_m
        if min_hi >= max_lo:
            key = "randomization.min_range_m" if rnd.min_range_m is not None else "randomization.max_range_m"
            raise ValueError(f"{key}: a drawn min range ({min_hi}) could reach the max range ({max_lo})")
        return self

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def sha256(self) -> str:
        """Hash of the scenario's canonical content (not of its file's formatting)."""
        return sha256_bytes(yaml.safe_dump(self.to_dict(), sort_keys=True).encode())


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


_FIELD_MESSAGE = re.compile(r"^Value error, ([A-Za-z_][A-Za-z0-9_.]*)(?: \((\w)\))?: (.*)$", re.DOTALL)


def _format_error(source: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = [str(part) for part in first["loc"]]
    if first["type"] == "extra_forbidden":
        return f"scenario {source}: unknown key '{'.'.join(loc)}'"
    message = first["msg"]
    match = _FIELD_MESSAGE.match(message)
    if match:   # a cross-field check names its own key: join it to where it was raised
        loc.append(match.group(1))
        message = match.group(3) if not match.group(2) else f"({match.group(2)}) {match.group(3)}"
    key = ".".join(loc) or "(top level)"
    return f"scenario {source}: invalid value for '{key}': {message}"


def parse_scenario(data: object, source: str = "<dict>") -> Scenario:
    if not isinstance(data, dict):
        raise ScenarioError(f"scenario {source}: expected a mapping at the top level")
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError(_format_error(source, exc)) from None


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a built-in scenario by name, or a user's YAML file by path."""
    text = str(name_or_path)
    path = Path(text)
    if not path.suffix and not path.exists():
        path = BUILTIN_DIR / f"{text}.yaml"
        if not path.exists():
            raise ScenarioError(
                f"scenario '{text}' is neither a file nor a built-in (built-ins: {', '.join(builtin_names())})"
            )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(f"scenario file not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"scenario {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return parse_scenario(raw, str(path))
