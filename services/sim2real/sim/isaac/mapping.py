"""Scenario + World → an Isaac Sim / Replicator scene description, in pure Python.

Nothing here imports Isaac Sim: the description is data (prim paths, USD types, attributes,
transforms, camera intrinsics) that ``backend.IsaacBackend`` authors on the USD stage. Keeping the
mapping separate lets it be unit-tested on machines without an RTX GPU.

Conventions, the same as the MuJoCo and PyBullet backends:

- Stage: Z up, 1 metre per unit. The floor's top face is z = 0.
- A box obstacle is a ``Cube`` prim (``size`` 2, so its local extent is ±1) scaled by its
  half-extents, centred at half its height and turned by its yaw about Z. A cylinder (including a
  pole) is a ``Cylinder`` prim, axis Z, ``radius`` and ``height`` set directly.
- The camera is a ``Camera`` prim. USD cameras look down their local -Z with +Y up and +X to the
  image's right, so the camera's world matrix has rows (right, up, back) = (-left, up, -forward)
  of ``world.camera_extrinsics``; USD matrices are row-vector, translation in the last row.
- Intrinsics: square pixels, ``horizontalAperture`` fixed and ``focalLength`` chosen so that
  ``2 atan(aperture / (2 focal))`` is the sampled horizontal field of view; the vertical aperture
  is ``aperture * height / width``.
- Depth is Replicator's ``distance_to_image_plane`` annotator: z-depth in metres, ``inf`` where
  nothing is hit, the same quantity the other backends return.

Randomization: every range in the scenario is drawn by sim2real's own seeded numpy sampler
(``sim.world``), not by ``rep.distribution``, so that a seed gives the same scenes, labels and bytes
in every backend, and the expert can label from the true geometry. ``randomizers()`` lists where
each range lands in Isaac Sim: baked into prims per scene, set on the camera per image, or applied
to the depth image after rendering (the sensor model, shared numpy code).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from sim2real.contracts.scenario import RENDER_REACH_M, Scenario
from sim2real.sim import kinds
from sim2real.sim.base import UnsupportedScenario
from sim2real.sim.world import (
    PRIMITIVES,
    CameraSample,
    Obstacle,
    Pose2D,
    World,
    camera_extrinsics,
)

ROOT = "/World/sim2real"
CAMERA_PATH = "/World/sim2real_camera"
DEPTH_ANNOTATOR = "distance_to_image_plane"
HORIZONTAL_APERTURE = 20.955      # USD's default (tenths of a unit); only the ratio to focal matters
NEAR_CLIP_M = 0.01
FLOOR_THICKNESS_M = 0.01


@dataclass(frozen=True)
class PrimSpec:
    """One USD geometry prim: where it goes, its type, its own attributes and its transform."""

    path: str
    type: str                                  # "Cube" or "Cylinder"
    translate: tuple[float, float, float]
    orient: tuple[float, float, float, float]  # quaternion (w, x, y, z)
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    attributes: dict = field(default_factory=dict)
    semantic_class: str = ""


@dataclass(frozen=True)
class CameraSpec:
    path: str
    resolution: tuple[int, int]                # (width, height), as Replicator's render_product takes it
    focal_length: float
    horizontal_aperture: float
    vertical_aperture: float
    clipping_range: tuple[float, float]
    transform: tuple[tuple[float, ...], ...]   # 4x4 row-vector world matrix (xformOp:transform)
    translate: tuple[float, float, float]
    orient: tuple[float, float, float, float]  # (w, x, y, z) of the same rotation


@dataclass(frozen=True)
class SceneDescription:
    meters_per_unit: float
    up_axis: str
    prims: tuple[PrimSpec, ...]
    annotator: str


def yaw_quaternion(yaw: float) -> tuple[float, float, float, float]:
    return (math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2))


def matrix_quaternion(m: np.ndarray) -> tuple[float, float, float, float]:
    """(w, x, y, z) of a proper rotation matrix (column-vector convention)."""
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * math.sqrt(trace + 1.0)
        q = (0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s)
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = ((m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s)
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = ((m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s)
    else:
        s = 2.0 * math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = ((m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s)
    w, x, y, z = q
    sign = -1.0 if w < 0 else 1.0
    return (sign * w, sign * x, sign * y, sign * z)


def obstacle_prim(path: str, o: Obstacle, semantic_class: str) -> PrimSpec:
    if o.shape not in PRIMITIVES:
        raise UnsupportedScenario(f"isaac backend: unknown obstacle shape '{o.shape}'")
    centre = (float(o.x), float(o.y), float(o.z0) + float(o.height) / 2)
    if o.shape == "cylinder":
        return PrimSpec(path, "Cylinder", centre, (1.0, 0.0, 0.0, 0.0),
                        attributes={"radius": float(o.size[0]), "height": float(o.height), "axis": "Z"},
                        semantic_class=semantic_class)
    return PrimSpec(path, "Cube", centre, yaw_quaternion(float(o.yaw)),
                    scale=(float(o.size[0]), float(o.size[1]), float(o.height) / 2),
                    attributes={"size": 2.0}, semantic_class=semantic_class)


def scene_description(scenario: Scenario, world: World) -> SceneDescription:
    """The prims of a World: floor, arena walls, then every part of each obstacle in ``world.obstacles``
    order (``obstacle_<k>`` for a one-part obstacle, ``obstacle_<k>_<j>`` for part j of a larger one),
    labelled with the kind's semantic class."""
    check_supported(scenario)
    floor_x = world.arena_size[0] / 2 + 2 * world.wall_thickness
    floor_y = world.arena_size[1] / 2 + 2 * world.wall_thickness
    prims = [PrimSpec(f"{ROOT}/floor", "Cube", (0.0, 0.0, -FLOOR_THICKNESS_M / 2), (1.0, 0.0, 0.0, 0.0),
                      scale=(floor_x, floor_y, FLOOR_THICKNESS_M / 2), attributes={"size": 2.0},
                      semantic_class="floor")]
    prims += [obstacle_prim(f"{ROOT}/wall_{k}", o, "wall") for k, o in enumerate(world.walls())]
    for k, o in enumerate(world.obstacles):
        kind = kinds.of(o)
        parts = kind.parts(o)
        label = kind.semantic_class(o)
        prims += [obstacle_prim(f"{ROOT}/obstacle_{k}" if len(parts) == 1 else f"{ROOT}/obstacle_{k}_{j}", part, label)
                  for j, part in enumerate(parts)]
    prims += [obstacle_prim(f"{ROOT}/person_{k}", part, "person") for k, part in enumerate(world.person_parts())]
    return SceneDescription(1.0, "Z", tuple(prims), DEPTH_ANNOTATOR)


def intrinsics(width: int, height: int, hfov_deg: float) -> tuple[float, float, float]:
    """(focal_length, horizontal_aperture, vertical_aperture) giving ``hfov_deg`` with square pixels."""
    focal = HORIZONTAL_APERTURE / (2.0 * math.tan(math.radians(hfov_deg) / 2.0))
    return focal, HORIZONTAL_APERTURE, HORIZONTAL_APERTURE * height / width


def camera_spec(scenario: Scenario, pose: Pose2D, camera: CameraSample) -> CameraSpec:
    """The camera prim for one image: pose (with mounting jitter), intrinsics and resolution."""
    width, height = camera.size(scenario.camera)
    origin, rotation = camera_extrinsics(pose, camera, scenario.robot.radius_m)
    usd_axes = np.stack([-rotation[:, 1], rotation[:, 2], -rotation[:, 0]])   # rows: right, up, back
    matrix = np.eye(4)
    matrix[:3, :3] = usd_axes
    matrix[3, :3] = origin
    focal, h_ap, v_ap = intrinsics(width, height, camera.hfov_deg)
    return CameraSpec(CAMERA_PATH, (width, height), focal, h_ap, v_ap, (NEAR_CLIP_M, RENDER_REACH_M),
                      tuple(tuple(float(v) for v in row) for row in matrix),
                      tuple(float(v) for v in origin), matrix_quaternion(usd_axes.T))


def project(spec: CameraSpec, point: tuple[float, float, float]) -> tuple[float, float, float]:
    """(column, row, z-depth) of a world point in the image of ``spec``, the way a USD pinhole
    camera maps it (pixel centres at +0.5). Used by tests to check the mapping against the
    contract's rays."""
    m = np.asarray(spec.transform)
    local = (np.asarray(point, dtype=float) - m[3, :3]) @ m[:3, :3].T   # world → camera (rows are axes)
    depth = -local[2]
    width, height = spec.resolution
    fx = spec.focal_length / spec.horizontal_aperture * width
    fy = spec.focal_length / spec.vertical_aperture * height
    return (width / 2 + fx * local[0] / depth - 0.5, height / 2 - fy * local[1] / depth - 0.5, depth)


def randomizers(scenario: Scenario) -> list[dict]:
    """Where each randomization range of the scenario is applied in Isaac Sim.

    ``stage`` is ``scene`` (drawn per world, baked into the prims by ``load``), ``camera`` (drawn
    per image, set on the camera prim before the Replicator step) or ``post_render`` (drawn per
    image, applied to the annotator's depth by ``sim.sensors``).
    """
    a, ob, rnd, sp = scenario.arena, scenario.obstacles, scenario.randomization, scenario.start_pose
    out = [
        {"key": "obstacles.count", "range": list(ob.count), "stage": "scene", "target": f"{ROOT}/obstacle_*"},
        {"key": "obstacles.shapes", "values": list(ob.shapes), "stage": "scene",
         "target": "prims of each kind's parts (Cube: box parts; Cylinder: cylinder parts)"},
        {"key": "obstacles.size_m", "range": list(ob.size_m), "stage": "scene", "target": "xformOp:scale / radius"},
        {"key": "obstacles.height_m", "range": list(ob.height_m), "stage": "scene", "target": "xformOp:scale / height"},
        {"key": "obstacles.yaw_deg", "range": list(ob.yaw_deg), "stage": "scene", "target": "xformOp:orient"},
        {"key": "obstacles.min_gap_m", "range": list(ob.min_gap_m) if isinstance(ob.min_gap_m, tuple)
         else [ob.min_gap_m, ob.min_gap_m], "stage": "scene", "target": "xformOp:translate (placement)"},
    ]
    listed = {r["key"] for r in out}
    for name in dict.fromkeys(ob.shapes):          # each kind's own keys, once
        for key in kinds.get(name).keys:
            if key not in listed:
                listed.add(key)
                out.append({"key": key, "range": _value(scenario, key), "stage": "scene",
                            "target": f"{ROOT}/obstacle_* of kind '{name}' (Cube scale / Cylinder radius, height)"})
    if a.size_range_m is not None:
        out.append({"key": "arena.size_range_m", "range": [list(r) for r in a.size_range_m], "stage": "scene",
                    "target": f"{ROOT}/floor, {ROOT}/wall_*"})
    if a.partitions.count[1] > 0:
        out.append({"key": "arena.partitions.count", "range": list(a.partitions.count), "stage": "scene",
                    "target": f"{ROOT}/obstacle_* (semantic class 'partition')"})
    people = ob.people
    if people.count[1] > 0:      # placed where they stand per world (datagen does not move them)
        for key in ("count", "radius_m", "height_m", "speed_mps"):
            out.append({"key": f"obstacles.people.{key}", "range": list(getattr(people, key)), "stage": "scene",
                        "target": f"{ROOT}/person_* (Cylinder radius, height, xformOp:translate)"})
    out.append({"key": "start_pose", "range": {"x_m": sp.x_m, "y_m": sp.y_m, "yaw_deg": list(sp.yaw_deg)},
                "stage": "camera", "target": f"{CAMERA_PATH} xformOp:transform"})
    camera_targets = {
        "camera_height_m": "xformOp:transform (translation z)",
        "camera_pitch_deg": "xformOp:transform (rotation)",
        "camera_roll_deg": "xformOp:transform (rotation)",
        "camera_yaw_deg": "xformOp:transform (rotation)",
        "camera_lateral_m": "xformOp:transform (translation)",
        "camera_hfov_deg": "focalLength",
        "camera_aspect": "render product resolution, verticalAperture",
    }
    for name, target in camera_targets.items():
        value = getattr(rnd, name)
        if value is not None:
            out.append({"key": f"randomization.{name}", "range": list(value), "stage": "camera",
                        "target": f"{CAMERA_PATH} {target}"})
    for name in ("stereo_sigma_per_m2", "dropout", "edge_hole_prob", "shadow_baseline_m", "quantization_m",
                 "min_range_m", "max_return_m"):
        value = getattr(rnd, name)
        if value is not None:
            out.append({"key": f"randomization.{name}", "range": list(value), "stage": "post_render",
                        "target": "sim2real.sim.sensors.apply_sensor_model"})
    return out


def _value(scenario: Scenario, key: str):
    """The value of a dotted scenario key, as JSON (a range as a list)."""
    value = scenario.to_dict()
    for part in key.split("."):
        value = value[part]
    return value


def check_supported(scenario: Scenario) -> None:
    """Raise ``UnsupportedScenario`` naming a key this mapping cannot honour.

    Every current key maps; the checks guard the assumptions the mapping makes.
    """
    cam = scenario.camera
    if cam.width * cam.height > 1280 * 1024:
        raise UnsupportedScenario("isaac backend: camera.width x camera.height above 1280x1024 is not supported")
    if scenario.camera.min_range_m < NEAR_CLIP_M:
        raise UnsupportedScenario(f"isaac backend: camera.min_range_m below the near clip {NEAR_CLIP_M} m")
