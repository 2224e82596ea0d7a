"""Domain randomization driven by the scenario: schema, world and camera sampling, camera mounting."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim2real.contracts.scenario import Randomization, ScenarioError, load_scenario, parse_scenario
from sim2real.sim.expert import signed_distances
from sim2real.sim.world import (CameraSample, Pose2D, World, camera_extrinsics, nominal_camera, sample_camera,
                                sample_free_pose, sample_world)


def scenario(**sections):
    return parse_scenario({"name": "t", **sections}, "t.yaml")


@pytest.mark.parametrize("data, key", [
    ({"arena": {"size_range_m": [[1.0, 3.0], [4.0, 5.0]]}}, "arena.size_range_m"),
    ({"arena": {"partitions": {"count": [3, 1]}}}, "arena.partitions.count"),
    ({"arena": {"partitions": {"length_frac": [0.2, 0.9]}}}, "arena.partitions.length_frac"),
    ({"obstacles": {"shapes": ["box", "sphere"]}}, "obstacles.shapes"),
    ({"obstacles": {"shape_weights": [1.0]}}, "obstacles.shape_weights"),
    ({"obstacles": {"pole_radius_m": [0.05, 0.01]}}, "obstacles.pole_radius_m"),
    ({"obstacles": {"yaw_deg": [-200.0, 0.0]}}, "obstacles.yaw_deg"),
    ({"obstacles": {"min_gap_m": [0.6, 0.2]}}, "obstacles.min_gap_m"),
    ({"randomization": {"camera_roll_deg": [-30.0, 0.0]}}, "randomization.camera_roll_deg"),
    ({"randomization": {"edge_hole_prob": [0.0, 1.5]}}, "randomization.edge_hole_prob"),
    ({"randomization": {"min_range_m": [0.1, 6.0]}}, "randomization.min_range_m"),
    ({"randomization": {"camera_aspect": [0.5, 1.5]}}, "randomization.camera_aspect"),
    ({"randomization": {"max_return_m": [4.0, 50.0]}}, "randomization.max_return_m"),
    ({"randomization": {"max_range_m": [4.0, 5.0]}}, "randomization.max_range_m"),
    ({"randomization": {"dropuot": [0.0, 0.1]}}, "randomization.dropuot"),
    ({"noise": {"quantization_mode": "log"}}, "noise.quantization_mode"),
    ({"noise": {"shadow_baseline_m": -0.01}}, "noise.shadow_baseline_m"),
    ({"start_pose": {"yaw_deg": [0.0, 270.0]}}, "start_pose.yaw_deg"),
    ({"datagen": {"forward_fraction": 1.5}}, "datagen.forward_fraction"),
])
def test_a_bad_value_names_its_key(data, key):
    with pytest.raises(ScenarioError, match=f"'{key}"):
        scenario(**data)


def test_the_training_scenario_has_every_randomization_on():
    default = load_scenario("default")
    rnd = default.randomization
    assert all(getattr(rnd, name) is not None for name in Randomization.model_fields if name != "hfov_step_deg")
    # The camera is a real one: the RealSense D435's depth stream, 87 degrees wide, 16:9.
    assert (default.camera.width, default.camera.height, default.camera.hfov_deg) == (224, 126, 87.0)
    assert "D435" in default.camera.name
    assert set(default.obstacles.shapes) == {"box", "cylinder", "pole", "wall"}
    assert default.arena.size_range_m is not None and default.arena.partitions.count[1] > 0
    assert isinstance(default.obstacles.min_gap_m, tuple)
    # Evaluation's nominal camera stays fixed: no mounting jitter, the noise section's values.
    nominal = nominal_camera(default)
    assert (nominal.roll_deg, nominal.yaw_offset_deg, nominal.lateral_m) == (0.0, 0.0, 0.0)
    assert nominal.hfov_deg == default.camera.hfov_deg and nominal.dropout == default.noise.dropout


def test_tiny_stays_small_and_plain():
    tiny = load_scenario("tiny")
    assert tiny.camera.width == 64 and tiny.arena.size_range_m is None and tiny.arena.partitions.count == (0, 0)
    assert set(tiny.obstacles.shapes) == {"box", "cylinder"}


def test_worlds_follow_the_scenario_ranges():
    spec = scenario(arena={"size_range_m": [[5.0, 7.0], [6.0, 6.5]], "partitions": {"count": [1, 2]}},
                    obstacles={"count": [4, 8], "shapes": ["box", "cylinder", "pole", "wall"],
                               "pole_radius_m": [0.02, 0.03], "wall_length_m": [1.0, 1.5],
                               "wall_thickness_m": [0.05, 0.1], "yaw_deg": [0.0, 45.0], "min_gap_m": [0.4, 0.5]})
    rng = np.random.default_rng(0)
    sizes, kinds = [], set()
    for _ in range(30):
        world = sample_world(spec, rng)
        sizes.append(world.arena_size)
        hx, hy = world.arena_size[0] / 2, world.arena_size[1] / 2
        partitions = [o for o in world.obstacles if o.kind == "partition"]
        assert 1 <= len(partitions) <= 2
        for wall in partitions:      # attached to an outer wall, inside the arena, leaving a gap
            ends_x = (wall.x - wall.size[0], wall.x + wall.size[0])
            ends_y = (wall.y - wall.size[1], wall.y + wall.size[1])
            touches = (math.isclose(max(map(abs, ends_x)), hx) if wall.size[0] > wall.size[1]
                       else math.isclose(max(map(abs, ends_y)), hy))
            assert touches and max(map(abs, ends_x)) <= hx + 1e-9 and max(map(abs, ends_y)) <= hy + 1e-9
            assert 2 * max(wall.size) <= 0.45 * max(world.arena_size) + 1e-9
        placed = [o for o in world.obstacles if o.kind != "partition"]
        assert len(placed) <= 8
        for o in placed:
            kinds.add(o.kind or o.shape)
            assert o.shape in ("box", "cylinder")
            if o.kind == "pole":
                assert o.shape == "cylinder" and 0.02 <= o.size[0] <= 0.03
            if o.kind == "wall":
                assert o.shape == "box" and 1.0 <= 2 * o.size[0] <= 1.5 and 0.05 <= 2 * o.size[1] <= 0.1
            if o.shape == "box":
                assert 0.0 <= o.yaw <= math.radians(45.0) + 1e-9
            assert abs(o.x) + o.footprint_radius() <= hx and abs(o.y) + o.footprint_radius() <= hy
        for i, a in enumerate(placed):       # spacing: footprint circles at least the smallest gap apart
            for b in placed[i + 1:]:
                assert math.hypot(a.x - b.x, a.y - b.y) - a.footprint_radius() - b.footprint_radius() >= 0.4 - 1e-9
            if partitions:
                assert signed_distances(World(world.arena_size, 0.6, 0.1, partitions),
                                        np.array([[a.x, a.y]]))[0, :len(partitions)].min() \
                    - a.footprint_radius() >= 0.4 - 1e-9
    sizes = np.array(sizes)
    assert (sizes[:, 0] >= 5.0).all() and (sizes[:, 0] <= 7.0).all() and sizes[:, 0].std() > 0.3
    assert (sizes[:, 1] >= 6.0).all() and (sizes[:, 1] <= 6.5).all()
    assert kinds == {"box", "cylinder", "pole", "wall"}


def test_shape_weights_skew_the_draw():
    spec = scenario(obstacles={"count": [8, 8], "shapes": ["box", "pole"], "shape_weights": [0.0, 1.0]})
    world = sample_world(spec, np.random.default_rng(1))
    assert world.obstacles and all(o.kind == "pole" for o in world.obstacles)


def test_start_pose_region_bounds_start_poses():
    spec = scenario(start_pose={"x_m": [1.0, 2.0], "y_m": [-9.0, -1.0], "yaw_deg": [80.0, 100.0]},
                    obstacles={"count": [0, 0]})
    rng = np.random.default_rng(2)
    world = sample_world(spec, rng)
    for _ in range(50):
        pose = sample_free_pose(world, 0.5, rng)
        assert 1.0 <= pose.x <= 2.0 and -3.5 <= pose.y <= -1.0      # clipped to the 8 m arena, 0.5 m free
        assert math.radians(80.0) <= pose.yaw <= math.radians(100.0)


def test_cameras_follow_the_randomization_ranges():
    spec = load_scenario("default")
    rng = np.random.default_rng(3)
    rnd = spec.randomization
    fields = {"mount_height_m": rnd.camera_height_m, "pitch_deg": rnd.camera_pitch_deg,
              "hfov_deg": rnd.camera_hfov_deg, "roll_deg": rnd.camera_roll_deg, "yaw_offset_deg": rnd.camera_yaw_deg,
              "lateral_m": rnd.camera_lateral_m, "stereo_sigma_per_m2": rnd.stereo_sigma_per_m2,
              "dropout": rnd.dropout, "edge_hole_prob": rnd.edge_hole_prob,
              "shadow_baseline_m": rnd.shadow_baseline_m, "quantization_m": rnd.quantization_m,
              "min_range_m": rnd.min_range_m, "max_return_m": rnd.max_return_m}
    samples = [sample_camera(spec, rng) for _ in range(300)]
    for name, (lo, hi) in fields.items():
        values = np.array([getattr(s, name) for s in samples])
        assert values.min() >= lo and values.max() <= hi, name
        assert values.std() > (hi - lo) / 5, f"{name} is not spread over its range"
    # Common depth cameras: 55-90 degrees wide, 4:3 to 16:9, each image within the camera's pixels.
    assert rnd.camera_hfov_deg == (55.0, 90.0) and rnd.camera_aspect == (1.333, 1.778)
    aspects = np.array([s.width / s.height for s in samples])
    assert aspects.min() < 1.36 and aspects.max() > 1.74 and aspects.std() > 0.08
    assert all(s.width <= spec.camera.width and s.height <= spec.camera.height for s in samples)
    assert all(max(s.width / spec.camera.width, s.height / spec.camera.height) == 1.0 for s in samples)
    stepped = spec.model_copy(update={"randomization": rnd.model_copy(update={"hfov_step_deg": 5.0})})
    hfovs = {sample_camera(stepped, rng).hfov_deg for _ in range(100)}
    assert hfovs <= {55.0, 60.0, 65.0, 70.0, 75.0, 80.0, 85.0, 90.0} and len(hfovs) >= 6


def test_mounting_jitter_moves_and_turns_the_camera():
    pose = Pose2D(1.0, 2.0, math.pi / 2)                       # facing +y: left is -x
    plain = CameraSample(0.25, 0.0, 87.0, 0.0, 0.0)
    origin, rotation = camera_extrinsics(pose, plain, 0.2)
    np.testing.assert_allclose(origin, [1.0, 2.2, 0.25], atol=1e-12)
    np.testing.assert_allclose(rotation[:, 0], [0.0, 1.0, 0.0], atol=1e-12)
    shifted, _ = camera_extrinsics(pose, CameraSample(0.25, 0.0, 87.0, 0.0, 0.0, lateral_m=0.05), 0.2)
    np.testing.assert_allclose(shifted, [0.95, 2.2, 0.25], atol=1e-12)
    _, yawed = camera_extrinsics(pose, CameraSample(0.25, 0.0, 87.0, 0.0, 0.0, yaw_offset_deg=10.0), 0.2)
    assert math.degrees(math.atan2(yawed[1, 0], yawed[0, 0])) == pytest.approx(100.0)
    _, rolled = camera_extrinsics(pose, CameraSample(0.25, 0.0, 87.0, 0.0, 0.0, roll_deg=5.0), 0.2)
    np.testing.assert_allclose(rolled[:, 0], rotation[:, 0], atol=1e-12)       # same optical axis
    assert math.degrees(math.acos(rolled[:, 2] @ [0.0, 0.0, 1.0])) == pytest.approx(5.0)
    # Positive roll turns the camera's up toward its right (the image rotates counter-clockwise).
    assert rolled[:, 2] @ -rotation[:, 1] > 0


def test_both_backends_honour_mounting_jitter():
    """MuJoCo (datagen) and PyBullet (evaluation) see the same image under a jittered camera."""
    pytest.importorskip("mujoco")
    pytest.importorskip("pybullet")
    from sim2real.sim.mujoco_backend import MujocoBackend
    from sim2real.sim.pybullet_backend import PybulletBackend

    spec = load_scenario("tiny")
    world = sample_world(load_scenario("default"), np.random.default_rng(5))
    rng = np.random.default_rng(6)
    pose = sample_free_pose(world, 0.6, rng)
    camera = CameraSample(0.26, 12.0, 85.0, 0.0, 0.0, roll_deg=6.0, yaw_offset_deg=-8.0, lateral_m=0.03)
    mj, pb = MujocoBackend(spec), PybulletBackend(spec)
    try:
        mj.load(world)
        pb.load(world)
        a, b = mj.render_ideal(pose, camera), pb.render_ideal(pose, camera)
        plain = mj.render_ideal(pose, CameraSample(0.26, 12.0, 85.0, 0.0, 0.0))
    finally:
        mj.close()
        pb.close()
    both = np.isfinite(a) & np.isfinite(b)
    assert (np.isfinite(a) == np.isfinite(b)).mean() > 0.95
    assert (np.abs(a[both] - b[both]) < 0.05 + 0.02 * a[both]).mean() > 0.95
    assert not np.allclose(np.nan_to_num(a), np.nan_to_num(plain)), "the jitter changed the image"
