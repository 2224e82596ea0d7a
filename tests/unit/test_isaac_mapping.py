"""Scenario → Isaac Sim / Replicator mapping, checked without Isaac Sim (no RTX GPU on test machines).

The geometry of the described prims is checked against the World (point containment), and the
camera description against the contract's pixel rays (a point on a pixel's ray must project to
that pixel at its z-depth under the USD pinhole model). The backend's control flow runs against
stand-in ``isaacsim`` / ``omni`` / ``pxr`` modules: that proves our code paths, not Isaac Sim's API.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import math
import sys
import types
from unittest import mock

import numpy as np
import pytest

from sim2real.contracts.camera import ray_directions
from sim2real.contracts.scenario import load_scenario
from sim2real.sim import registry
from sim2real.sim.expert import signed_distances
from sim2real.sim.isaac import mapping
from sim2real.sim.world import CameraSample, Obstacle, Pose2D, World, camera_extrinsics, sample_camera, sample_world


@pytest.fixture(scope="module")
def default():
    return load_scenario("default")


def quat_matrix(q) -> np.ndarray:
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def inside(prim: mapping.PrimSpec, points: np.ndarray) -> np.ndarray:
    """Which (N, 3) points a described prim contains, from its USD description alone."""
    local = (points - prim.translate) @ quat_matrix(prim.orient)        # world → prim frame (R^T p)
    if prim.type == "Cube":
        half = np.asarray(prim.scale) * prim.attributes["size"] / 2
        return (np.abs(local) <= half).all(axis=1)
    assert prim.attributes["axis"] == "Z"
    return ((np.hypot(local[:, 0], local[:, 1]) <= prim.attributes["radius"])
            & (np.abs(local[:, 2]) <= prim.attributes["height"] / 2))


def test_isaac_is_registered_and_says_when_it_is_missing(default):
    assert "isaac" in registry.names()
    if importlib.util.find_spec("isaacsim") is None:
        with pytest.raises(RuntimeError, match="'isaac' is not installed here"):
            registry.create("isaac", default)


def test_prims_describe_the_world(default):
    world = sample_world(default, np.random.default_rng(0))
    scene = mapping.scene_description(default, world)
    assert scene.meters_per_unit == 1.0 and scene.up_axis == "Z" and scene.annotator == "distance_to_image_plane"
    assert [p.path for p in scene.prims][:5] == [f"{mapping.ROOT}/floor"] + [f"{mapping.ROOT}/wall_{k}" for k in range(4)]
    assert len(scene.prims) == 5 + len(world.obstacles)
    kinds = {p.semantic_class for p in scene.prims[5:]}
    assert kinds <= {"box", "cylinder", "pole", "wall", "partition"} and len(kinds) >= 3
    # Every solid, as described, holds exactly the points the World says are inside it.
    rng = np.random.default_rng(1)
    hx, hy = world.arena_size[0] / 2 + 0.2, world.arena_size[1] / 2 + 0.2
    xy = rng.uniform([-hx, -hy], [hx, hy], (20000, 2))
    solids = world.solids()
    sdf = signed_distances(world, xy)
    for j, prim in enumerate(scene.prims[5:] + scene.prims[1:5]):     # obstacles, then walls: solids() order
        o = solids[j]
        z = rng.uniform(0.0, o.height, len(xy))
        contained = inside(prim, np.c_[xy, z])
        clear = np.abs(sdf[:, j]) > 1e-6
        np.testing.assert_array_equal(contained[clear], sdf[clear, j] < 0, err_msg=prim.path)
        assert not inside(prim, np.c_[xy, np.full(len(xy), o.height + 0.01)]).any(), "no taller than the solid"
    floor = scene.prims[0]
    assert floor.translate[2] + floor.scale[2] == pytest.approx(0.0), "the floor's top face is z = 0"


@pytest.mark.parametrize("jitter", [{}, {"roll_deg": 5.0, "yaw_offset_deg": -3.0, "lateral_m": 0.02}])
def test_camera_projects_each_pixel_ray_onto_its_pixel(default, jitter):
    pose = Pose2D(0.7, -1.2, 2.2)
    camera = CameraSample(0.24, 11.0, 85.0, 0.0, 0.0, **jitter)
    spec = mapping.camera_spec(default, pose, camera)
    w, h = default.camera.width, default.camera.height
    assert spec.resolution == (w, h) and spec.path == mapping.CAMERA_PATH
    hfov = math.degrees(2 * math.atan(spec.horizontal_aperture / (2 * spec.focal_length)))
    assert hfov == pytest.approx(85.0)
    assert spec.vertical_aperture / spec.horizontal_aperture == pytest.approx(h / w)
    assert spec.clipping_range[0] < default.camera.min_range_m and spec.clipping_range[1] >= default.camera.max_range_m
    m = np.asarray(spec.transform)
    np.testing.assert_allclose(m[:3, :3] @ m[:3, :3].T, np.eye(3), atol=1e-12)
    assert np.linalg.det(m[:3, :3]) == pytest.approx(1.0)
    np.testing.assert_allclose(m[:3, 3], 0.0)
    assert m[3, 3] == 1.0
    np.testing.assert_allclose(quat_matrix(spec.orient), m[:3, :3].T, atol=1e-9)
    origin, rotation = camera_extrinsics(pose, camera, default.robot.radius_m)
    np.testing.assert_allclose(spec.translate, origin)
    rays = ray_directions(w, h, camera.hfov_deg)
    for row, col in [(0, 0), (h // 2, w // 2), (h - 1, 17), (40, w - 1)]:
        z_depth = 2.5
        point = origin + rotation @ (rays[row, col] / rays[row, col, 0] * z_depth)
        u, v, depth = mapping.project(spec, point)
        assert (u, v) == pytest.approx((col, row), abs=1e-6)
        assert depth == pytest.approx(z_depth)


def test_randomizers_cover_every_range_of_the_scenario(default):
    listed = {r["key"] for r in mapping.randomizers(default)}
    for name, value in default.randomization:
        if value is not None and name != "hfov_step_deg":
            assert f"randomization.{name}" in listed
    for key in ("obstacles.count", "obstacles.shapes", "obstacles.size_m", "obstacles.yaw_deg",
                "obstacles.min_gap_m", "obstacles.pole_radius_m", "obstacles.wall_length_m",
                "arena.size_range_m", "arena.partitions.count", "start_pose"):
        assert key in listed
    stages = {r["key"]: r["stage"] for r in mapping.randomizers(default)}
    assert stages["randomization.camera_hfov_deg"] == "camera" and stages["randomization.dropout"] == "post_render"
    assert stages["obstacles.count"] == "scene"


def test_unknown_shapes_are_refused_naming_them(default):
    world = World((4.0, 4.0), 0.6, 0.1, [Obstacle("sphere", 1.0, 0.0, 0.0, (0.2, 0.2), 0.4)])
    with pytest.raises(ValueError, match="unknown obstacle kind 'sphere'"):
        mapping.scene_description(default, world)


# ------------------------------------------------------------------ backend, against stand-in modules
@pytest.fixture
def fake_isaac(monkeypatch):
    """Stand-ins for isaacsim, omni.replicator.core, omni.usd and pxr that record what is done."""
    depth_of = {}

    def module(name, **attrs):
        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None)
        mod.__dict__.update(attrs)
        monkeypatch.setitem(sys.modules, name, mod)
        return mod

    module("isaacsim", SimulationApp=mock.MagicMock(name="SimulationApp"))
    annotator = mock.MagicMock(name="annotator")
    annotator.get_data.side_effect = lambda: depth_of["image"]
    rep = module("omni.replicator.core", create=mock.MagicMock(), AnnotatorRegistry=mock.MagicMock(),
                 orchestrator=mock.MagicMock())
    rep.AnnotatorRegistry.get_annotator.return_value = annotator
    stage = mock.MagicMock(name="stage")
    stage.GetPrimAtPath.return_value = False
    usd = module("omni.usd", get_context=mock.MagicMock())
    usd.get_context.return_value.get_stage.return_value = stage
    module("omni", usd=usd, replicator=types.SimpleNamespace(core=rep))
    geom = mock.MagicMock(name="UsdGeom")
    module("pxr", UsdGeom=geom, Gf=mock.MagicMock(), Sdf=mock.MagicMock())
    monkeypatch.delitem(sys.modules, "sim2real.sim.isaac.backend", raising=False)
    monkeypatch.setattr("sim2real.sim.isaac.backend._APP", None, raising=False)
    backend_module = importlib.import_module("sim2real.sim.isaac.backend")
    yield backend_module, rep, geom, stage, annotator, depth_of
    sys.modules.pop("sim2real.sim.isaac.backend", None)


def test_backend_builds_the_description_and_reads_depth(fake_isaac, default):
    backend_module, rep, geom, stage, annotator, depth_of = fake_isaac
    backend = registry.create("isaac", default)
    assert isinstance(backend, backend_module.IsaacBackend) and not backend.can_drive
    rep.create.render_product.assert_not_called()          # one per image size, made on first use
    with pytest.raises(RuntimeError, match="before load"):
        backend.render_ideal(Pose2D(0, 0, 0), sample_camera(default, np.random.default_rng(0)))
    world = sample_world(default, np.random.default_rng(2))
    backend.load(world)
    defined = [c.args[1] for c in geom.Cube.Define.call_args_list + geom.Cylinder.Define.call_args_list]
    assert sorted(defined) == sorted(p.path for p in mapping.scene_description(default, world).prims)
    camera = sample_camera(default, np.random.default_rng(3))
    width, height = camera.size(default.camera)
    assert (width, height) != (default.camera.width, default.camera.height), "a drawn camera of another aspect"
    image = np.full((height, width), 2.0, dtype=np.float32)
    image[:10] = np.inf                       # nothing hit
    depth_of["image"] = image
    ideal = backend.render_ideal(Pose2D(0.5, 0.5, 1.0), camera)
    rep.create.render_product.assert_called_once_with(mapping.CAMERA_PATH, (width, height))
    rep.AnnotatorRegistry.get_annotator.assert_called_once_with("distance_to_image_plane")
    rep.orchestrator.step.assert_called_once()
    assert np.isnan(ideal[:10]).all() and (ideal[10:] == 2.0).all()
    spec = mapping.camera_spec(default, Pose2D(0.5, 0.5, 1.0), camera)
    backend._camera.GetFocalLengthAttr.return_value.Set.assert_called_with(spec.focal_length)
    noisy = backend.render_depth(Pose2D(0.5, 0.5, 1.0), camera, np.random.default_rng(4))
    assert noisy.dtype == np.float32 and np.isnan(noisy).mean() >= np.isnan(ideal).mean()
    backend.close()
    annotator.detach.assert_called_once()
