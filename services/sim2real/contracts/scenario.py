"""The scenario file: one YAML that every simulator backend understands.

A scenario names the arena, obstacles, robot, camera, sensor noise, randomization ranges and
episode rules. Ranges are ``[low, high]`` pairs sampled uniformly per scene (or per image, for the
camera). Built-in scenarios live in ``contracts/scenarios/<name>.yaml``; a path to a user's file
works wherever a name does. Unknown keys and bad values are errors that name the key.

Bounds: every number carries its lowest and highest value in its type, with one of four
helpers, so a new key cannot be added without them (a test checks it):

- ``Real(low, high)`` / ``Int(low, high)``: one number, ``low <= x <= high``
  (``Real(0, high, open_low=True)``: ``0 < x <= high``);
- ``RealRange(low, high)`` / ``IntRange(low, high)``: a ``[lo, hi]`` pair with
  ``low <= lo <= hi <= high``.

NaN and infinities are refused everywhere. :func:`bounds_table` lists every bound; the table in
``docs/scenarios.md`` is that list. Checks that span keys (an arena that cannot hold its
obstacles, an episode without a control step) are in the section's or the scenario's validator,
naming the key to change.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal, Union, get_args, get_origin

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, model_validator

from sim2real.contracts.manifest import sha256_bytes

BUILTIN_DIR = Path(__file__).with_name("scenarios")
RENDER_REACH_M = 20.0   # the simulators render surfaces up to this far; beyond it nothing returns

# An obstacle kind's name. Which names exist is not known here: the kinds live in ``sim.kinds`` (one
# module each), and the scenario is checked against that registry (``kind_catalogue``).
KindName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]

# A scenario whose largest obstacle count needs more floor than this share of its smallest arena
# is refused. The need is estimated generously (a disc of the mean footprint radius plus half the
# gap per obstacle); sim.world places every obstacle up to about 0.7 of it, and falls a few short
# of the count between 0.7 and 1.
MAX_OBSTACLE_COVER = 1.0
# A gated evaluation (--min-success) needs episodes of at least this many control steps.
MIN_GATE_STEPS = 10
MAX_FILE_BYTES = 1 << 20          # a scenario file is a page of YAML, never megabytes
# libyaml where present: linear in the nesting depth and bounded by it (pure-Python PyYAML takes
# seconds on a few thousand nested brackets before giving up).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# The robot's 3D footprint is a vertical cylinder of robot.radius_m from the floor to its top: the
# body (ROBOT_GROUND_CLEARANCE_M + robot.height_m) or the camera mast, which ends CAMERA_HOUSING_M
# above the highest camera mount, whichever is higher (Scenario.robot_top_m).
ROBOT_GROUND_CLEARANCE_M = 0.01
CAMERA_HOUSING_M = 0.03
MAX_OVERLAY_DEPTH = 8             # an overlay's base may itself be an overlay, this many times


class ScenarioError(ValueError):
    """A scenario that cannot be loaded; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# ----------------------------------------------------------------------------- bounded types
def Real(low: float, high: float, open_low: bool = False, open_high: bool = False):  # noqa: N802 (a type)
    """A finite float within ``[low, high]``; ``open_low`` / ``open_high`` leave that end out."""
    return Annotated[float, Field(**{"gt" if open_low else "ge": low, "lt" if open_high else "le": high})]


def Int(low: int, high: int):  # noqa: N802
    """A whole number within ``[low, high]``."""
    return Annotated[int, Field(ge=low, le=high)]


def _check_pair(low: float, high: float):
    def check(value: tuple) -> tuple:
        lo, hi = value
        if lo > hi:
            raise ValueError(f"low {lo} is above high {hi}")
        if lo < low:
            raise ValueError(f"{lo} is below {low}")
        if hi > high:
            raise ValueError(f"{hi} is above {high}")
        return value
    return check


def RealRange(low: float, high: float):  # noqa: N802
    """A ``[lo, hi]`` range of finite floats with ``low <= lo <= hi <= high``."""
    return Annotated[tuple[float, float], AfterValidator(_check_pair(low, high)), Field(json_schema_extra={
        "bounds": [low, high]})]


def IntRange(low: int, high: int):  # noqa: N802
    """A ``[lo, hi]`` range of whole numbers with ``low <= lo <= hi <= high``."""
    return Annotated[tuple[int, int], AfterValidator(_check_pair(low, high)), Field(json_schema_extra={
        "bounds": [low, high]})]


class Partitions(_Strict):
    """Interior wall layout: straight partitions that stand out from a random outer wall into the room.

    Each partition starts at an outer wall, runs perpendicular to it for a length drawn from
    ``length_frac`` (a fraction of the room's depth in that direction, so a doorway-sized gap always
    remains), at a position along the wall drawn from ``position_frac`` (0 = one corner, 1 = the other).
    """

    count: IntRange(0, 8) = (0, 0)
    length_frac: RealRange(0.05, 0.6) = (0.2, 0.45)
    position_frac: RealRange(0.0, 1.0) = (0.2, 0.8)
    thickness_m: Real(0, 1, open_low=True) = 0.1


class Arena(_Strict):
    """A rectangular floor centred on the origin, closed by walls.

    ``size_range_m`` (``[[x_low, x_high], [y_low, y_high]]``) draws each side per scene instead of
    the fixed ``size_m``; ``partitions`` adds interior walls.
    """

    size_m: tuple[Real(2, 100), Real(2, 100)] = (8.0, 8.0)
    size_range_m: tuple[RealRange(2, 100), RealRange(2, 100)] | None = None
    wall_height_m: Real(0, 10, open_low=True) = 0.6
    wall_thickness_m: Real(0, 2, open_low=True) = 0.1
    partitions: Partitions = Partitions()

    def smallest(self) -> tuple[float, float]:
        """The smallest room this arena can be (x, y)."""
        if self.size_range_m is not None:
            return self.size_range_m[0][0], self.size_range_m[1][0]
        return self.size_m


class Table(_Strict):
    """The ``table`` kind: a top on four legs at its corners. ``size_m`` draws each side of the top,
    ``height_m`` the height of its upper face. With ``drive_under`` every table is drawn so that the
    robot fits under it and between its legs (the scenario is refused where it cannot)."""

    size_m: RealRange(0.3, 4) = (0.6, 1.4)
    height_m: RealRange(0.1, 2) = (0.45, 0.8)
    top_thickness_m: RealRange(0.01, 0.2) = (0.02, 0.05)
    leg_radius_m: RealRange(0.005, 0.1) = (0.015, 0.03)
    drive_under: bool = False


class Chair(_Strict):
    """The ``chair`` kind: a square seat on four legs and a backrest along one edge (``back_height_m``
    above the seat; 0 draws a stool)."""

    seat_m: RealRange(0.2, 1.5) = (0.38, 0.5)
    seat_height_m: RealRange(0.1, 1.5) = (0.4, 0.5)
    seat_thickness_m: RealRange(0.01, 0.2) = (0.03, 0.05)
    back_height_m: RealRange(0, 1.5) = (0.3, 0.5)
    leg_radius_m: RealRange(0.005, 0.1) = (0.012, 0.02)


class LowObstacle(_Strict):
    """The ``low`` kind: a low box on the floor (a threshold, a cable guard, a step) that the robot
    cannot climb and must see: each side from ``size_m``, height from ``height_m``."""

    size_m: RealRange(0.05, 4) = (0.15, 0.8)
    height_m: RealRange(0.01, 0.5) = (0.03, 0.12)


class People(_Strict):
    """Moving obstacles ("people"): upright cylinders that walk, one control step at a time, during
    evaluation (datagen sees them where they stand). ``pattern``: ``bounce`` walks straight lines
    that bounce off walls and obstacles; ``waypoints`` walks to random free points, one after
    another. Speed, radius and height are drawn per person. The expert decides from the current
    snapshot and keeps each person's disc ``speed_mps[1] * expert_horizon_s`` wider (the most a
    person can walk in that time), so its labels stay a function of what one frame shows.
    """

    count: IntRange(0, 30) = (0, 0)
    speed_mps: RealRange(0, 3) = (0.3, 1.0)
    radius_m: RealRange(0.05, 0.6) = (0.15, 0.25)
    height_m: RealRange(0.3, 2.5) = (1.5, 1.9)
    pattern: Literal["bounce", "waypoints"] = "bounce"
    expert_horizon_s: Real(0, 5) = Field(1.0, description="the expert widens each person by max speed x this")

    def margin_m(self) -> float:
        """How much wider the expert keeps each person: the farthest one walks in the horizon."""
        return self.speed_mps[1] * self.expert_horizon_s


class Obstacles(_Strict):
    """Obstacles drawn per scene: count, shape, size, pose and spacing all come from ranges.

    ``shapes`` lists obstacle kinds by name (the registered kinds of ``sim.kinds``): ``box``
    (half-extents from ``size_m``), ``cylinder`` (radius from ``size_m``), ``pole`` (a thin cylinder,
    radius from ``pole_radius_m``), ``wall`` (a free-standing wall segment, full length
    ``wall_length_m``, thickness ``wall_thickness_m``), and those documented in docs/scenarios.md.
    ``shape_weights`` (same order as ``shapes``) skews the draw; without it kinds are equally likely.
    ``min_gap_m`` is a number or a ``[low, high]`` range drawn per scene.
    """

    count: IntRange(0, 100) = (6, 12)
    shapes: tuple[KindName, ...] = Field(("box", "cylinder"), max_length=16)
    shape_weights: tuple[Real(0, 1000), ...] | None = Field(None, max_length=16)
    size_m: RealRange(0.02, 5) = (0.15, 0.5)
    height_m: RealRange(0.05, 10) = (0.3, 1.0)
    pole_radius_m: RealRange(0.005, 0.5) = (0.02, 0.05)
    wall_length_m: RealRange(0.1, 20) = (0.8, 2.0)
    wall_thickness_m: RealRange(0.01, 2) = (0.05, 0.15)
    yaw_deg: RealRange(-180, 180) = (-180.0, 180.0)
    min_gap_m: Union[Real(0, 10), RealRange(0, 10)] = 0.5
    start_clearance_m: Real(0, 10) = 0.8
    overhead_margin_m: Real(0, 1) = Field(0.05, description="headroom the robot needs to pass under a top")
    table: Table = Table()
    chair: Chair = Chair()
    low: LowObstacle = LowObstacle()
    people: People = People()

    @model_validator(mode="after")
    def _shapes(self) -> "Obstacles":
        if not self.shapes:
            raise ValueError("shapes: list at least one shape")
        if self.shape_weights is not None:
            if len(self.shape_weights) != len(self.shapes):
                raise ValueError(f"shape_weights: {len(self.shape_weights)} weights for {len(self.shapes)} shapes")
            if sum(self.shape_weights) <= 0:
                raise ValueError("shape_weights: weights must not be all zero")
        return self

    def mean_footprint_m(self, kinds: dict | None = None) -> float:
        """Expected footprint radius of one obstacle (range midpoints, kinds by weight)."""
        kinds = kind_catalogue() if kinds is None else kinds
        weights = self.shape_weights or (1.0,) * len(self.shapes)
        return sum(w * kinds[s].mean_footprint_m(self) for s, w in zip(self.shapes, weights)) / sum(weights)

    def min_gap_low(self) -> float:
        return self.min_gap_m[0] if isinstance(self.min_gap_m, tuple) else self.min_gap_m


class StartPose(_Strict):
    """Where the robot starts an episode (and where datagen's free-space poses are drawn).

    ``x_m`` / ``y_m`` are ranges in metres (clipped to the arena; absent = the whole arena) and
    ``yaw_deg`` the heading range. The pose also keeps ``obstacles.start_clearance_m`` from every surface.
    """

    x_m: RealRange(-50, 50) | None = None
    y_m: RealRange(-50, 50) | None = None
    yaw_deg: RealRange(-180, 180) = (-180.0, 180.0)


class Robot(_Strict):
    """A differential-drive base; the footprint is a cylinder of ``radius_m``."""

    radius_m: Real(0, 2, open_low=True) = 0.18
    height_m: Real(0, 2, open_low=True) = 0.15
    mass_kg: Real(0, 1000, open_low=True) = 4.0
    wheel_radius_m: Real(0, 1, open_low=True) = 0.05
    wheel_separation_m: Real(0, 5, open_low=True) = 0.30
    forward_speed_mps: Real(0, 5, open_low=True) = 0.5
    turn_rate_radps: Real(0, 5, open_low=True) = 0.5


class Camera(_Strict):
    """A forward-looking pinhole depth camera at the front of the robot (square pixels, centred).

    ``min_range_m`` / ``max_range_m`` are the camera's rated range, and the range a model trained
    on this scenario scales to [0, 1]: a reading beyond ``max_range_m`` is still published (it is
    free space, "too far"), one below ``min_range_m`` is "too near". ``name`` says which real
    camera this is (recorded in the model). A model is trained for this camera's field of view.
    """

    name: str = Field("", max_length=100)
    width: Int(16, 1280) = 224
    height: Int(16, 1024) = 126
    hfov_deg: Real(10, 170, open_low=True, open_high=True) = 87.0
    mount_height_m: Real(0, 5, open_low=True) = 0.25
    pitch_deg: Real(-45, 45) = Field(10.0, description="downward tilt")
    min_range_m: Real(0, 100, open_low=True) = 0.1
    max_range_m: Real(0, 100, open_low=True) = 5.0

    @model_validator(mode="after")
    def _range(self) -> "Camera":
        if self.min_range_m >= self.max_range_m:
            raise ValueError("min_range_m must be below max_range_m")
        return self


class Noise(_Strict):
    """Depth sensor model applied by every backend after rendering (``sim.sensors``), in this order:
    shadows, edge holes, stereo noise, quantisation, range (too near: no return; beyond
    ``max_return_m``: no return), dropout."""

    stereo_sigma_per_m2: Real(0, 1) = Field(0.0, description="std dev = k * z^2 (metres)")
    dropout: Real(0, 1) = Field(0.0, description="fraction of pixels read as invalid")
    edge_hole_prob: Real(0, 1) = Field(0.0, description="chance that a pixel on a depth edge reads invalid")
    edge_jump_m: Real(0, 10, open_low=True) = Field(0.1, description="depth step between neighbours that "
                                                                     "makes an edge")
    shadow_baseline_m: Real(0, 0.5) = Field(0.0, description="stereo baseline; pixels the second imager cannot "
                                                               "see read invalid (0 = no shadows)")
    quantization_m: Real(0, 0.5) = Field(0.0, description="depth step at 1 m (0 = none)")
    quantization_mode: Literal["depth", "disparity"] = Field(
        "disparity", description="'depth': a fixed step; 'disparity': the step grows with z^2 (stereo)")
    max_return_m: Real(0, RENDER_REACH_M) = Field(
        0.0, description="farthest surface that still returns (structured light, time of flight); farther "
                         f"ones read no return. 0: every surface within the render's {RENDER_REACH_M:g} m (stereo)")


class Randomization(_Strict):
    """Per-image ranges; each replaces the camera's (or the noise section's) fixed value when present.

    ``camera_roll_deg``, ``camera_yaw_deg`` and ``camera_lateral_m`` are mounting jitter (nominal 0).
    ``camera_hfov_deg`` and ``camera_aspect`` (width / height, e.g. 4:3 = 1.333, 16:9 = 1.778) draw
    a different camera per image: the image is the largest of that aspect within ``camera.width`` x
    ``camera.height`` pixels. ``hfov_step_deg`` rounds each drawn field of view to a multiple of
    itself so ray tables can be reused (0 = continuous). ``min_range_m`` is the drawn camera's
    minimum range (closer surfaces read no return), ``max_return_m`` its reach (see ``noise``).
    """

    camera_height_m: RealRange(0.01, 5) | None = None
    camera_pitch_deg: RealRange(-45, 45) | None = None
    camera_hfov_deg: RealRange(10, 170) | None = None
    camera_roll_deg: RealRange(-20, 20) | None = None
    camera_yaw_deg: RealRange(-20, 20) | None = None
    camera_lateral_m: RealRange(-0.5, 0.5) | None = None
    stereo_sigma_per_m2: RealRange(0, 1) | None = None
    dropout: RealRange(0, 1) | None = None
    edge_hole_prob: RealRange(0, 1) | None = None
    shadow_baseline_m: RealRange(0, 0.5) | None = None
    quantization_m: RealRange(0, 0.5) | None = None
    camera_aspect: RealRange(1.0, 2.5) | None = None
    min_range_m: RealRange(0, 100) | None = None
    max_return_m: RealRange(0, RENDER_REACH_M) | None = None
    hfov_step_deg: Real(0, 10) = 0.0

    @model_validator(mode="before")
    @classmethod
    def _retired(cls, data: object) -> object:
        if isinstance(data, dict) and "max_range_m" in data:
            raise ValueError("max_range_m: no longer a randomization: a reading beyond the camera's max range "
                             "is published as measured (too far, free space), not made a hole; to draw a "
                             "camera whose reach ends, use randomization.max_return_m")
        return data


class Expert(_Strict):
    """The privileged expert's rule: stop-and-turn when its path is blocked within ``stop_distance_m``."""

    stop_distance_m: Real(0, 10, open_low=True) = Field(0.7, description="free length needed ahead to go forward")
    corridor_margin_m: Real(0, 2) = Field(0.05, description="added to the robot radius each side")
    side_tie_m: Real(0, 1) = Field(0.05, description="|lateral offset| below which the freer side decides")


class Episode(_Strict):
    """Episode rules: ``duration_s`` at ``control_hz`` gives ``round(duration_s * control_hz)`` control
    steps (at least one); success needs ``min_progress_m`` of net displacement and no collision."""

    duration_s: Real(0, 600, open_low=True) = 20.0
    control_hz: Real(0, 200, open_low=True) = 10.0
    min_progress_m: Real(0, 100) = Field(1.5, description="net displacement needed for success")
    expert: Expert = Expert()

    @property
    def steps(self) -> int:
        return int(round(self.duration_s * self.control_hz))

    @model_validator(mode="after")
    def _some_steps(self) -> "Episode":
        if self.steps < 1:
            raise ValueError(f"duration_s: {self.duration_s} s at {self.control_hz} Hz is no control step; "
                             f"an episode needs at least {1 / self.control_hz:g} s")
        return self


class Datagen(_Strict):
    """How datagen draws its images (evaluation ignores this section).

    ``forward_fraction`` sets the share of FORWARD labels; the rest is split evenly between LEFT and
    RIGHT, exactly over the dataset and within one image per shard (poses are redrawn until the
    expert's label fits). Absent = the natural mix of the pose sampler. ``images_per_world`` is how
    many images are taken in each sampled scene.
    """

    forward_fraction: Real(0, 1) | None = None
    images_per_world: Int(1, 10000) = 25


class Scenario(_Strict):
    name: str = Field(min_length=1, max_length=100)
    description: str = Field("", max_length=2000)
    seed: Int(0, 2**32 - 1) = 0
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
        if min_hi >= cam.max_range_m:
            key = "randomization.min_range_m" if rnd.min_range_m is not None else "camera.min_range_m"
            raise ValueError(f"{key}: a drawn min range ({min_hi}) could reach the max range ({cam.max_range_m})")
        return self

    @model_validator(mode="after")
    def _known_kinds(self, info: ValidationInfo) -> "Scenario":
        kinds = _context_kinds(info)
        unknown = [s for s in self.obstacles.shapes if s not in kinds]
        if unknown:
            raise ValueError(f"obstacles.shapes: unknown kind '{unknown[0]}' (registered: {', '.join(sorted(kinds))})")
        for name in dict.fromkeys(self.obstacles.shapes):
            kinds[name].check(self)
        return self

    @model_validator(mode="after")
    def _room_for_obstacles(self, info: ValidationInfo) -> "Scenario":
        ob = self.obstacles
        sx, sy = self.arena.smallest()
        reach = ob.mean_footprint_m(_context_kinds(info))
        need = ob.count[1] * math.pi * (reach + ob.min_gap_low() / 2) ** 2
        floor = max(sx - 2 * reach, 0.0) * max(sy - 2 * reach, 0.0)
        if ob.count[1] and need > MAX_OBSTACLE_COVER * floor:
            raise ValueError(f"obstacles.count: {ob.count[1]} obstacles (mean footprint radius {reach:.2f} m, "
                             f"min_gap_m {ob.min_gap_low():g}) need about {need:.1f} m² of floor, more than "
                             f"the {MAX_OBSTACLE_COVER * floor:.1f} m² of the smallest {sx:g} m x {sy:g} m arena; "
                             f"lower the count or the sizes, or enlarge the arena")
        people = ob.people
        if people.count[1]:
            # Each person needs a disc as wide as the expert keeps it, plus room to walk around it.
            disc = people.radius_m[1] + people.margin_m() + ob.min_gap_low() / 2
            walkers = people.count[1] * math.pi * disc**2
            if need + walkers > MAX_OBSTACLE_COVER * sx * sy:
                raise ValueError(f"obstacles.people.count: {people.count[1]} people (radius up to "
                                 f"{people.radius_m[1]:g} m, kept {people.margin_m():.2f} m wider by the expert) "
                                 f"and the obstacles need about {need + walkers:.1f} m² of floor, more than the "
                                 f"{MAX_OBSTACLE_COVER * sx * sy:.1f} m² of the smallest {sx:g} m x {sy:g} m arena; "
                                 f"lower the count, the speed or expert_horizon_s, or enlarge the arena")
        return self

    @model_validator(mode="after")
    def _start_inside(self) -> "Scenario":
        sx, sy = self.arena.smallest()
        for axis, span, half in (("x_m", self.start_pose.x_m, sx / 2), ("y_m", self.start_pose.y_m, sy / 2)):
            if span is not None and (span[1] < -half or span[0] > half):
                raise ValueError(f"start_pose.{axis}: {list(span)} lies outside the smallest arena "
                                 f"(±{half:g} m)")
        return self

    def robot_top_m(self) -> float:
        """Height of the robot's top, camera mast included (the highest camera the scenario draws)."""
        mount = self.camera.mount_height_m
        if self.randomization.camera_height_m is not None:
            mount = max(mount, self.randomization.camera_height_m[1])
        return max(ROBOT_GROUND_CLEARANCE_M + self.robot.height_m, mount + CAMERA_HOUSING_M)

    def clear_height_m(self) -> float:
        """How high an underside must be for the robot to pass beneath it."""
        return self.robot_top_m() + self.obstacles.overhead_margin_m

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def sha256(self) -> str:
        """Hash of the scenario's canonical content (not of its file's formatting)."""
        return sha256_bytes(yaml.safe_dump(self.to_dict(), sort_keys=True).encode())

    def gate_problem(self) -> str | None:
        """Why a success-rate gate on this scenario would mean nothing (None when it can gate)."""
        return gate_problem(self.episode.min_progress_m, self.episode.duration_s, self.episode.control_hz)


def kind_catalogue() -> dict:
    """The registered obstacle kinds by name (``sim.kinds``, numpy only; imported when first needed).

    Each answers ``mean_footprint_m(obstacles)`` and ``check(scenario)``; ``parse_scenario`` takes
    another catalogue through ``kinds=`` (a test, or a caller with its own kinds).
    """
    from sim2real.sim.kinds import catalogue

    return catalogue()


def _context_kinds(info: ValidationInfo) -> dict:
    context = info.context or {}
    return context["kinds"] if "kinds" in context else kind_catalogue()


def gate_problem(min_progress_m: float, duration_s: float, control_hz: float) -> str | None:
    """Why a success-rate gate on episodes with these rules would mean nothing (None when it can gate).

    A policy that spins in place succeeds when no progress is needed, and an episode of a few
    control steps cannot tell a policy from standing still.
    """
    steps = int(round(duration_s * control_hz))
    if min_progress_m <= 0:
        return ("episode.min_progress_m is 0, so a robot that never moves succeeds; "
                "set the net progress an episode needs")
    if steps < MIN_GATE_STEPS:
        return (f"episode.duration_s: {duration_s} s at {control_hz} Hz gives {steps} control steps per episode; "
                f"a gate needs at least {MIN_GATE_STEPS}")
    return None


def _number(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _bounds_of(item) -> tuple[str, str] | None:
    """(lowest, highest) as text for a field or a bounded type, or None when it has no bounds."""
    if get_origin(item) is Annotated:
        return next((b for b in map(_bounds_of, get_args(item)[1:]) if b is not None), None)
    extra = getattr(item, "json_schema_extra", None)
    if isinstance(extra, dict) and "bounds" in extra:
        return tuple(map(_number, extra["bounds"]))
    metadata = getattr(item, "metadata", [])
    low = next((f"> {_number(m.gt)}" for m in metadata if getattr(m, "gt", None) is not None), None) or \
        next((_number(m.ge) for m in metadata if getattr(m, "ge", None) is not None), None)
    high = next((_number(m.le) for m in metadata if getattr(m, "le", None) is not None), None) or \
        next((f"< {_number(m.lt)}" for m in metadata if getattr(m, "lt", None) is not None), None)
    return None if low is None and high is None else (low or "", high or "")


def _nested(annotation) -> list:
    """The bounded types inside ``annotation`` (through unions, optionals and tuples)."""
    if get_origin(annotation) is Annotated:
        return [annotation]
    return [leaf for arg in get_args(annotation) if arg is not Ellipsis for leaf in _nested(arg)]


def bounds_table(model: type[BaseModel] = Scenario, prefix: str = "") -> list[tuple[str, str, str]]:
    """Every numeric key of the schema with its (lowest, highest) value, in schema order.

    Sections recurse; a key whose type holds no number (names, shapes, modes) is left out, and a
    number without bounds is listed with empty ones (which ``tests/adversarial`` refuses).
    """
    rows = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        if isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel):
            rows += bounds_table(info.annotation, f"{key}.")
            continue
        found = [b for b in [_bounds_of(info), *map(_bounds_of, _nested(info.annotation))] if b is not None]
        if not found and _numeric(info.annotation):
            found = [("", "")]            # an unbounded number: the tests refuse it
        rows += [(key, low, high) for low, high in dict.fromkeys(found)]
    return rows


def _numeric(annotation) -> bool:
    """Whether a number can be given for this type (through unions, optionals and tuples)."""
    if annotation in (int, float):
        return True
    return any(_numeric(arg) for arg in get_args(annotation) if arg is not Ellipsis)


def builtin_names() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


_FIELD_MESSAGE = re.compile(r"^([A-Za-z_][A-Za-z0-9_.]*)(?: \((\w)\))?: (.*)$", re.DOTALL)
_KEY_PART = re.compile(r"^[A-Za-z0-9_]+$")


def _format_error(source: str, exc: ValidationError) -> str:
    errors = exc.errors()
    first = errors[0]
    if first["type"] == "extra_forbidden":
        return f"scenario {source}: unknown key '{'.'.join(map(str, first['loc']))}'"
    if any(not _KEY_PART.match(str(part)) for part in first["loc"]):
        # A union (a number or a range): report the member that got furthest into the value.
        field = first["loc"][:next(i for i, p in enumerate(first["loc"]) if not _KEY_PART.match(str(p)))]
        first = max((e for e in errors if e["loc"][:len(field)] == field), key=lambda e: len(e["loc"]))
    loc = [str(part) for part in first["loc"] if _KEY_PART.match(str(part))]
    message = re.sub(r"^Value error, ", "", first["msg"])
    match = _FIELD_MESSAGE.match(message)
    if match:   # a cross-field check names its own key: join it to where it was raised
        loc.append(match.group(1))
        message = match.group(3) if not match.group(2) else f"({match.group(2)}) {match.group(3)}"
    key = ".".join(loc) or "(top level)"
    return f"scenario {source}: invalid value for '{key}': {message}"


def parse_scenario(data: object, source: str = "<dict>", kinds: dict | None = None) -> Scenario:
    """A scenario from parsed YAML; ``kinds`` (name → kind) defaults to ``kind_catalogue()``."""
    if not isinstance(data, dict):
        raise ScenarioError(f"scenario {source}: expected a mapping at the top level")
    try:
        return Scenario.model_validate(data, context={"kinds": kind_catalogue() if kinds is None else kinds})
    except ValidationError as exc:
        raise ScenarioError(_format_error(source, exc)) from None


def _scenario_path(text: str, relative_to: Path | None = None) -> Path:
    """A built-in's file for a name, else the path (relative to an overlay's folder when it has one)."""
    path = Path(text)
    if relative_to is not None and not path.is_absolute() and path.suffix:
        path = relative_to / path
    if not path.suffix and not path.exists():
        path = BUILTIN_DIR / f"{text}.yaml"
        if not path.exists():
            raise ScenarioError(
                f"scenario '{text}' is neither a file nor a built-in (built-ins: {', '.join(builtin_names())})"
            )
    return path


def _read_yaml(path: Path) -> object:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ScenarioError(f"scenario {path}: {size} bytes is larger than a scenario can be "
                                f"({MAX_FILE_BYTES} bytes)")
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER)
    except FileNotFoundError:
        raise ScenarioError(f"scenario file not found: {path}") from None
    except IsADirectoryError:
        raise ScenarioError(f"scenario {path} is a folder, not a YAML file") from None
    except UnicodeDecodeError:
        raise ScenarioError(f"scenario {path}: not UTF-8 text") from None
    except yaml.YAMLError as exc:
        raise ScenarioError(f"scenario {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise ScenarioError(f"scenario {path}: nested too deeply") from None


def merge_overlay(base: dict, overlay: dict) -> dict:
    """``overlay`` over ``base``: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_overlay(merged[key], value)
        else:
            merged[key] = value
    return merged


def _resolve_base(raw: object, path: Path, depth: int = 0) -> object:
    """An overlay (a file with ``base: <name or path>``) merged over its base, recursively."""
    if not isinstance(raw, dict) or "base" not in raw:
        return raw
    if depth >= MAX_OVERLAY_DEPTH:
        raise ScenarioError(f"scenario {path}: more than {MAX_OVERLAY_DEPTH} overlays deep (a 'base' loop?)")
    base = raw["base"]
    if not isinstance(base, str) or not base:
        raise ScenarioError(f"scenario {path}: 'base' must name a built-in scenario or a file, got {base!r}")
    base_path = _scenario_path(base, path.parent)
    base_raw = _resolve_base(_read_yaml(base_path), base_path, depth + 1)
    if not isinstance(base_raw, dict):
        raise ScenarioError(f"scenario {base_path}: expected a mapping at the top level")
    return merge_overlay(base_raw, {key: value for key, value in raw.items() if key != "base"})


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a built-in scenario by name, or a user's YAML file by path.

    A file with ``base: <name or path>`` is an overlay: its keys are merged over that scenario's
    (a relative path is taken from the overlay's folder).
    """
    path = _scenario_path(str(name_or_path))
    return parse_scenario(_resolve_base(_read_yaml(path), path), str(path))


def bounds_markdown() -> str:
    """``bounds_table()`` as the Markdown table of docs/scenarios.md."""
    lines = ["| key | lowest | highest |", "|---|---|---|"]
    lines += [f"| `{key}` | {low} | {high} |" for key, low, high in bounds_table()]
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--bounds"]:
        raise SystemExit("usage: python -m sim2real.contracts.scenario --bounds  (docs/scenarios.md's bounds table)")
    print(bounds_markdown())
