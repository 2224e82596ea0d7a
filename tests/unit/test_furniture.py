"""Furniture and low obstacles (``table``, ``chair``, ``low`` kinds): the robot's 3D footprint, camera
mast included, decides whether it passes under a top, and the expert and the physics agree; the
camera sees legs and tops in both simulators; scenarios that cannot be met are refused by key."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim2real.contracts.actions import FORWARD, Twist
from sim2real.contracts.scenario import ScenarioError, parse_scenario
from sim2real.sim import kinds
from sim2real.sim.expert import expert_action, path_clear
from sim2real.sim.kinds.base import Obstacle
from sim2real.sim.world import CameraSample, Pose2D, World, sample_world

pytest.importorskip("pybullet")
from sim2real.sim.pybullet_backend import PybulletBackend  # noqa: E402

FURNITURE = {"name": "furniture", "arena": {"size_m": [8, 8]},
             "obstacles": {"count": [8, 8], "shapes": ["table", "chair", "low"], "min_gap_m": 0.4}}


def scenario(**obstacles):
    data = {**FURNITURE, "obstacles": {**FURNITURE["obstacles"], **obstacles}}
    return parse_scenario(data)


def table(x: float, height: float, thickness: float = 0.03, half=(0.5, 0.5), leg=0.025) -> Obstacle:
    return Obstacle("box", x, 0.0, 0.0, half, height, "table", extra=(thickness, leg))


def room(sc, *obstacles) -> World:
    return World((8.0, 8.0), 0.6, 0.1, list(obstacles), clear_height=sc.clear_height_m())


def test_a_table_is_four_legs_and_a_top():
    parts = kinds.parts(table(1.0, 0.7))
    legs, top = parts[:4], parts[4]
    assert [p.shape for p in legs] == ["cylinder"] * 4 and all(p.z0 == 0 and p.height == pytest.approx(0.67)
                                                               for p in legs)
    assert top.shape == "box" and top.z0 == pytest.approx(0.67) and top.top == pytest.approx(0.7)
    assert sorted((round(p.x, 3), round(p.y, 3)) for p in legs) == [(0.525, -0.475), (0.525, 0.475),
                                                                    (1.475, -0.475), (1.475, 0.475)]
    chair = kinds.parts(Obstacle("box", 0, 0, 0, (0.2, 0.2), 0.9, "chair", extra=(0.45, 0.04, 0.45, 0.015)))
    assert len(chair) == 6 and chair[4].z0 == pytest.approx(0.41) and chair[5].z0 == pytest.approx(0.45)


def test_the_robot_top_includes_the_camera_mast():
    sc = scenario()
    assert sc.robot_top_m() == pytest.approx(sc.camera.mount_height_m + 0.03)
    assert sc.clear_height_m() == pytest.approx(sc.robot_top_m() + sc.obstacles.overhead_margin_m)
    drawn = parse_scenario({**FURNITURE, "randomization": {"camera_height_m": [0.2, 0.4]}})
    assert drawn.robot_top_m() == pytest.approx(0.43)       # the highest camera datagen draws


@pytest.mark.parametrize("height, passes", [(0.8, True), (0.3, False)])
def test_expert_and_physics_agree_on_passing_under_a_table(height, passes):
    """A high top lets the robot through between the legs; a top below the mast blocks it, in the
    expert's sweep and in PyBullet's contacts alike."""
    sc = scenario()
    world = room(sc, table(1.0, height))
    start = Pose2D(-0.5, 0.0, 0.0)
    assert path_clear(world, Pose2D(0.2, 0.0, 0.0), sc.robot.radius_m, sc.episode.expert) is passes
    pb = PybulletBackend(sc)
    try:
        pb.load(world)
        pb.reset_robot(start)
        collided = any(pb.step(Twist(0.5, 0.0), 0.1).collided for _ in range(50))
        assert collided is not passes
        if passes:
            assert pb.robot_pose().x > 2.0           # through the table and out the other side
    finally:
        pb.close()


def test_a_table_just_above_the_body_still_stops_the_mast():
    """Above the body (0.16 m) but below the camera mast: it is the mast that hits it."""
    sc = scenario()
    body_top = 0.01 + sc.robot.height_m
    world = room(sc, table(1.0, body_top + 0.06, thickness=0.02))
    assert expert_action(world, Pose2D(0.3, 0.0, 0.0), sc.robot.radius_m, sc.episode.expert) != FORWARD
    pb = PybulletBackend(sc)
    try:
        pb.load(world)
        pb.reset_robot(Pose2D(-0.5, 0.0, 0.0))
        assert any(pb.step(Twist(0.5, 0.0), 0.1).collided for _ in range(30))
    finally:
        pb.close()


def test_both_simulators_see_legs_and_tops():
    pytest.importorskip("mujoco")
    from sim2real.sim.mujoco_backend import MujocoBackend

    sc = scenario()
    world = room(sc, table(2.0, 0.75, thickness=0.05, half=(0.4, 0.6), leg=0.04),
                 Obstacle("box", 0.8, 1.0, 0.0, (0.2, 0.2), 0.06, "low"))
    camera = CameraSample(0.25, 0.0, 90.0, 0.0, 0.0, width=96, height=96)
    pose = Pose2D(0.0, 0.0, 0.0)
    mj, pb = MujocoBackend(sc), PybulletBackend(sc)
    try:
        mj.load(world)
        pb.load(world)
        fast, exact = mj.render_ideal(pose, camera), mj.render_ideal(pose, camera, exact=True)
        bullet = pb.render_ideal(pose, camera)
    finally:
        mj.close()
        pb.close()
    np.testing.assert_allclose(fast, exact, atol=1e-4)
    # The camera sits at the robot's front edge (x = radius); the near legs' faces are at x = 1.6.
    ahead = 1.6 - sc.robot.radius_m
    fx = 48 / math.tan(math.radians(45))
    leg_col = round(48 - 0.56 / ahead * fx - 0.5)          # the leg at y = +0.56, left of centre
    top_row = round(48 - (0.75 - 0.025 - 0.25) / ahead * fx - 0.5)   # the top's front face, above centre
    for image in (fast, bullet):
        assert image[48, leg_col] == pytest.approx(ahead, abs=0.04)
        assert image[top_row, 48] == pytest.approx(ahead, abs=0.04)
        assert image[48, 48] > ahead + 0.5                  # between the legs, under the top: far
    both = np.isfinite(fast) & np.isfinite(bullet)
    assert (np.abs(fast[both] - bullet[both]) < 0.05 + 0.02 * fast[both]).mean() > 0.95


def test_sampled_furniture_worlds_draw_every_kind_within_its_ranges():
    sc = scenario()
    drawn = []
    for seed in range(4):
        world = sample_world(sc, np.random.default_rng(seed))
        assert world.clear_height == pytest.approx(sc.clear_height_m())
        drawn += world.obstacles
    assert {o.kind for o in drawn} == {"table", "chair", "low"}
    t, c, lo = sc.obstacles.table, sc.obstacles.chair, sc.obstacles.low
    for o in drawn:
        if o.kind == "table":
            assert t.height_m[0] <= o.height <= t.height_m[1] and t.size_m[0] <= 2 * o.size[0] <= t.size_m[1]
        elif o.kind == "chair":
            assert c.seat_height_m[0] <= o.extra[0] <= c.seat_height_m[1]
        else:
            assert lo.height_m[0] <= o.height <= lo.height_m[1]


@pytest.mark.parametrize("obstacles, key", [
    ({"table": {"height_m": [0.3, 0.8], "drive_under": True}}, "'obstacles.table.height_m': with drive_under"),
    ({"table": {"size_m": [0.4, 1.0], "drive_under": True}}, "'obstacles.table.size_m': with drive_under"),
    ({"table": {"height_m": [0.1, 0.5], "top_thickness_m": [0.05, 0.1]}}, "'obstacles.table.top_thickness_m'"),
    ({"table": {"size_m": [0.3, 1.0], "leg_radius_m": [0.05, 0.1]}}, "'obstacles.table.leg_radius_m'"),
    ({"chair": {"seat_height_m": [0.1, 0.5], "seat_thickness_m": [0.1, 0.2]}}, "'obstacles.chair.seat_thickness_m'"),
    ({"low": {"height_m": [0.01, 0.6]}}, "'obstacles.low.height_m'"),
    ({"overhead_margin_m": 2.0}, "'obstacles.overhead_margin_m'"),
])
def test_furniture_that_cannot_be_met_is_refused_by_key(obstacles, key):
    with pytest.raises(ScenarioError, match=key):
        scenario(**obstacles)


def test_drive_under_tables_are_all_passable():
    sc = scenario(shapes=["table"], table={"height_m": [0.6, 0.8], "drive_under": True})
    for seed in range(3):
        for o in sample_world(sc, np.random.default_rng(seed)).obstacles:
            top = kinds.parts(o)[-1]
            assert top.z0 >= sc.clear_height_m()


def test_isaac_and_gazebo_build_every_part_at_its_height():
    import xml.etree.ElementTree as ET

    from sim2real.sim.gazebo.sdf import world_sdf
    from sim2real.sim.isaac import mapping

    sc = scenario()
    world = room(sc, table(1.0, 0.7, thickness=0.04))
    prims = [p for p in mapping.scene_description(sc, world).prims if "/obstacle_0_" in p.path]
    assert [p.type for p in prims] == ["Cylinder"] * 4 + ["Cube"]
    assert {p.semantic_class for p in prims} == {"table"}
    assert prims[4].translate[2] == pytest.approx(0.68) and prims[0].translate[2] == pytest.approx(0.33)
    listed = {r["key"] for r in mapping.randomizers(sc)}
    assert {"obstacles.table.height_m", "obstacles.chair.seat_height_m", "obstacles.low.height_m"} <= listed
    root = ET.fromstring(world_sdf(sc, world, Pose2D(-1.0, 0.0, 0.0)))
    links = root.findall("./world/model[@name='obstacle_0']/link")
    assert len(links) == 5
    top = [float(v) for v in links[4].find("pose").text.split()]
    assert top[:3] == pytest.approx([0.0, 0.0, 0.68])
    mast = root.find("./world/model[@name='robot']/link[@name='mast']")
    assert mast.find("sensor[@type='contact']/contact/collision").text == "mast_collision"
    assert float(mast.find("collision/geometry/cylinder/length").text) == pytest.approx(
        sc.robot_top_m() - 0.01 - sc.robot.height_m)


def test_the_report_draws_each_kind_from_the_episode_record(monkeypatch):
    """Every obstacle is drawn by its kind: a table's four legs filled, its top dashed."""
    from matplotlib.axes import Axes

    from sim2real.eval.report import trajectory_figure

    patches = []
    monkeypatch.setattr(Axes, "add_patch", lambda self, patch: patches.append(patch) or patch)
    record = {"index": 0, "success": True, "collided": False, "progress_m": 1.0, "trajectory": [[0, 0], [1, 0]],
              "collision_point": None, "arena_size_m": [8, 8],
              "obstacles": [table(1.0, 0.7).record(), Obstacle("cylinder", -1, 1, 0, (0.2, 0.2), 0.5).record()]}
    assert trajectory_figure({"per_episode": [record], "success_rate": 1.0}).startswith(b"\x89PNG")
    dashed = [p for p in patches if p.get_linestyle() == "--"]
    filled = [p for p in patches if p.get_linestyle() != "--" and p.get_facecolor()[3] > 0]
    assert len(dashed) == 1 and len(filled) >= 5          # the top; four legs and the cylinder
