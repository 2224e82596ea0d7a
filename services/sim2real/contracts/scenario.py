"""The scenario file: one YAML that every simulator backend understands.

A scenario names the arena, obstacles, robot, camera, sensor noise, randomization ranges and
episode rules. Ranges are ``[low, high]`` pairs sampled uniformly per scene (or per image, for the
camera). Built-in scenarios live in ``contracts/scenarios/<name>.yaml``; a path to a user's file
works wherever a name does. Unknown keys and bad values are errors that name the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sim2real.contracts.manifest import sha256_bytes

BUILTIN_DIR = Path(__file__).with_name("scenarios")

Range = tuple[float, float]
ShapeName = Literal["box", "cylinder"]


class ScenarioError(ValueError):
    """A scenario that cannot be loaded; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_range(name: str, value: Range, low: float | None = None) -> None:
    lo, hi = value
    if lo > hi:
        raise ValueError(f"{name}: low {lo} is above high {hi}")
    if low is not None and lo < low:
        raise ValueError(f"{name}: {lo} is below {low}")


class Arena(_Strict):
    """A rectangular floor centred on the origin, closed by walls."""

    size_m: tuple[float, float] = (8.0, 8.0)
    wall_height_m: float = Field(0.6, gt=0)
    wall_thickness_m: float = Field(0.1, gt=0)

    @model_validator(mode="after")
    def _positive(self) -> "Arena":
        if min(self.size_m) < 2.0:
            raise ValueError("size_m: each side must be at least 2 m")
        return self


class Obstacles(_Strict):
    count: tuple[int, int] = (6, 12)
    shapes: tuple[ShapeName, ...] = ("box", "cylinder")
    size_m: Range = (0.15, 0.5)
    height_m: Range = (0.3, 1.0)
    min_gap_m: float = Field(0.5, ge=0)
    start_clearance_m: float = Field(0.8, ge=0)

    @model_validator(mode="after")
    def _ranges(self) -> "Obstacles":
        if not self.shapes:
            raise ValueError("shapes: list at least one shape")
        _check_range("count", self.count, 0)
        _check_range("size_m", self.size_m, 0.02)
        _check_range("height_m", self.height_m, 0.05)
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
    """Depth sensor model applied by every backend after rendering."""

    stereo_sigma_per_m2: float = Field(0.0, ge=0, description="std dev = k * z^2 (metres)")
    dropout: float = Field(0.0, ge=0, le=1, description="fraction of pixels read as invalid")


class Randomization(_Strict):
    """Per-image ranges; each replaces the camera's fixed value when present."""

    camera_height_m: Range | None = None
    camera_pitch_deg: Range | None = None
    camera_hfov_deg: Range | None = None
    stereo_sigma_per_m2: Range | None = None
    dropout: Range | None = None

    @model_validator(mode="after")
    def _ranges(self) -> "Randomization":
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is not None:
                _check_range(name, value, 0.0 if name != "camera_pitch_deg" else -45.0)
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
    episode: Episode = Episode()

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def sha256(self) -> str:
        """Hash of the scenario's canonical content (not of its file's formatting)."""
        return sha256_bytes(yaml.safe_dump(self.to_dict(), sort_keys=True).encode())


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def _format_error(source: str, exc: ValidationError) -> str:
    first = exc.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"scenario {source}: unknown key '{key}'"
    return f"scenario {source}: invalid value for '{key}': {first['msg']}"


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
