"""Simulator B (PyBullet): depth geometry matches the shared camera contract; the robot drives."""

import dataclasses
import math
import time

import numpy as np
import pytest

pytest.importorskip("pybullet")

from sim2real.contracts.actions import Twist  # noqa: E402
from sim2real.contracts.camera import camera_rotation, ray_directions  # noqa: E402
from sim2real.contracts.scenario import load_scenario  # noqa: E402
from sim2real.sim import registry  # noqa: E402
from sim2real.sim.pybullet_backend import PybulletBackend  # noqa: E402
from sim2real.sim.world import (CameraSample, Obstacle, Pose2D, World, nominal_camera,  # noqa: E402
                                sample_free_pose, sample_world)


def _scenario(size: int = 64):
    sc = load_scenario("tiny")
    return sc.model_copy(update={"camera": sc.camera.model_copy(update={"width": size, "height": size})})


def _camera(sc, pitch: float = 0.0) -> CameraSample:
    return CameraSample(sc.camera.mount_height_m, pitch, sc.camera.hfov_deg, 0.0, 0.0)


@pytest.fixture(scope="module")
def backend():
    b = PybulletBackend(_scenario())
    yield b
    b.close()


def test_registered_and_drives():
    b = registry.create("pybullet", load_scenario("tiny"))
    try:
        assert isinstance(b, PybulletBackend) and b.can_drive and b.name == "pybullet"
    finally:
        b.close()


@pytest.mark.parametrize("yaw", [0.0, 2.0])
def test_wall_ahead_centre_depth_is_its_distance(backend, yaw):
    sc = backend.scenario
    distance = 1.2   # from the camera (at the robot's front edge) to the wall's face
    face = sc.robot.radius_m + distance
    c, s = math.cos(yaw), math.sin(yaw)
    wall = Obstacle("box", (face + 0.05) * c, (face + 0.05) * s, yaw, (0.05, 1.5), 1.5)
    backend.load(World((4.0, 4.0), 0.6, 0.1, [wall]))
    backend.reset_robot(Pose2D(0.0, 0.0, yaw))
    depth = backend.render_ideal(Pose2D(0.0, 0.0, yaw), _camera(sc))
    h, w = depth.shape
    assert depth.dtype == np.float32 and depth.shape == (sc.camera.height, sc.camera.width)
    assert depth[h // 2 - 1:h // 2 + 1, w // 2 - 1:w // 2 + 1] == pytest.approx(distance, rel=0.02)
    # z-depth, not ray length: a wall facing the camera reads the same distance across the row.
    assert depth[h // 2 - 1, 2:-2] == pytest.approx(np.full(w - 4, distance), rel=0.02)


def test_floor_matches_the_contract_rays(backend):
    """Pitch, field of view and row order agree with contracts.camera (what MuJoCo ray-casts)."""
    sc = backend.scenario
    camera = _camera(sc, pitch=10.0)
    backend.load(World((8.0, 8.0), 0.6, 0.1, []))
    pose = Pose2D(0.0, 0.0, 0.0)
    depth = backend.render_ideal(pose, camera)
    rays = ray_directions(sc.camera.width, sc.camera.height, camera.hfov_deg)
    world_rays = rays @ camera_rotation(pose.yaw, math.radians(camera.pitch_deg)).T
    down = world_rays[..., 2] < -1e-3
    t = np.where(down, camera.mount_height_m / -np.where(down, world_rays[..., 2], -1.0), np.inf)
    ahead = sc.robot.radius_m + t * world_rays[..., 0]
    floor = down & (ahead < 3.0)                     # floor hits well before the wall at 4 m
    expected = t * rays[..., 0]
    assert floor.sum() > 0.3 * floor.size
    assert depth[floor] == pytest.approx(expected[floor], rel=0.03, abs=0.01)
    assert np.isnan(depth[0]).all()                  # top row looks over the 0.6 m wall: nothing
    assert np.isfinite(depth[-1]).all()              # bottom row sees the floor close by


def test_obstacle_on_the_left_is_in_the_left_half(backend):
    sc = backend.scenario
    yaw = math.pi / 2                       # facing +y: the robot's left is -x
    post = Obstacle("cylinder", -0.6, 1.3, 0.0, (0.15, 0.15), 1.0)
    backend.load(World((4.0, 4.0), 0.6, 0.1, [post]))
    depth = backend.render_ideal(Pose2D(0.0, 0.0, yaw), _camera(sc))
    h, w = depth.shape
    upper = depth[: h // 2]                  # above the horizon: no floor
    near = np.isfinite(upper) & (upper < 1.6)
    assert near.sum() > 10
    cols = np.nonzero(near)[1]
    assert cols.max() < w // 2, "an obstacle on the robot's left must appear in the left half (col 0 = left)"


def test_render_depth_applies_the_sensor_model(backend):
    sc = backend.scenario
    backend.load(World((4.0, 4.0), 0.6, 0.1, []))
    cam = nominal_camera(sc)
    noisy = backend.render_depth(Pose2D(0.0, 0.0, 0.0), CameraSample(cam.mount_height_m, cam.pitch_deg,
                                                                      cam.hfov_deg, 0.0, 0.5),
                                 np.random.default_rng(0))
    assert 0.3 < np.isnan(noisy).mean() < 0.9
    valid = noisy[np.isfinite(noisy)]
    assert valid.min() >= sc.camera.min_range_m and valid.max() <= sc.camera.max_range_m


@pytest.mark.parametrize("size", [None, (112, 63), (84, 63)], ids=["64x64", "16:9", "4:3"])
def test_agrees_with_mujoco_on_a_sampled_world(size):
    """The two simulators see the same scene, square or not: most pixels agree to a few centimetres."""
    pytest.importorskip("mujoco")
    try:
        from sim2real.sim.mujoco_backend import MujocoBackend
    except ImportError as exc:  # the other backend is not here: nothing to compare
        pytest.skip(f"mujoco backend unavailable: {exc}")
    sc = _scenario()
    world = sample_world(load_scenario("default"), np.random.default_rng(3))
    mj, pb = MujocoBackend(sc), PybulletBackend(sc)
    try:
        mj.load(world)
        pb.load(world)
        # Poses in free space: fixed coordinates could land inside an obstacle of a randomized world.
        rng = np.random.default_rng(4)
        for pose in (sample_free_pose(world, 0.5, rng), sample_free_pose(world, 0.5, rng)):
            camera = _camera(sc, pitch=10.0)
            if size is not None:
                camera = dataclasses.replace(camera, width=size[0], height=size[1])
            a, b = mj.render_ideal(pose, camera), pb.render_ideal(pose, camera)
            assert a.shape == b.shape == camera.size(sc.camera)[::-1]
            both = np.isfinite(a) & np.isfinite(b)
            assert (np.isfinite(a) == np.isfinite(b)).mean() > 0.95
            assert (np.abs(a[both] - b[both]) < 0.05 + 0.02 * a[both]).mean() > 0.95
    finally:
        mj.close()
        pb.close()


def test_drives_forward_about_v_times_t(backend):
    backend.load(World((8.0, 8.0), 0.6, 0.1, []))
    backend.reset_robot(Pose2D(-2.0, 0.5, 0.3))
    for _ in range(20):
        result = backend.step(Twist(0.5, 0.0), 0.1)
    assert not result.collided
    pose = backend.robot_pose()
    travelled = math.hypot(pose.x + 2.0, pose.y - 0.5)
    assert travelled == pytest.approx(1.0, abs=0.08)
    assert math.atan2(pose.y - 0.5, pose.x + 2.0) == pytest.approx(0.3, abs=0.03)
    assert pose.yaw == pytest.approx(0.3, abs=0.03)


def test_turns_in_place_on_left(backend):
    backend.load(World((8.0, 8.0), 0.6, 0.1, []))
    backend.reset_robot(Pose2D(0.0, 0.0, 0.0))
    for _ in range(20):
        backend.step(Twist(0.0, 0.5), 0.1)
    pose = backend.robot_pose()
    assert pose.yaw == pytest.approx(1.0, abs=0.08)     # left is +yaw (REP 103)
    assert math.hypot(pose.x, pose.y) < 0.02


def test_driving_into_a_wall_is_a_collision(backend):
    backend.load(World((4.0, 4.0), 0.6, 0.1, []))
    backend.reset_robot(Pose2D(1.0, 0.0, 0.0))          # the wall's inner face is at x = 2
    collided_at = None
    for k in range(40):
        if backend.step(Twist(0.5, 0.0), 0.1).collided:
            collided_at = k
            break
    assert collided_at is not None
    assert backend.robot_pose().x == pytest.approx(2.0 - backend.scenario.robot.radius_m, abs=0.03)
    point = backend.contact_point()
    assert point is not None and point[0] == pytest.approx(2.0, abs=0.02)


def test_near_miss_is_not_a_collision(backend):
    backend.load(World((4.0, 4.0), 0.6, 0.1, []))
    r = backend.scenario.robot.radius_m
    backend.reset_robot(Pose2D(-1.0, 2.0 - r - 0.02, 0.0))   # 2 cm from the wall, driving along it
    assert not any(backend.step(Twist(0.5, 0.0), 0.1).collided for _ in range(10))


def test_render_timing(capsys):
    """Report render cost at the deployment sizes (no hard limit: the machine is shared)."""
    timings = {}
    world = sample_world(load_scenario("default"), np.random.default_rng(0))
    for size in (224, 96):
        b = PybulletBackend(_scenario(size))
        try:
            b.load(world)
            camera, rng = nominal_camera(b.scenario), np.random.default_rng(0)
            b.render_depth(Pose2D(0.0, 0.0, 0.0), camera, rng)
            t0 = time.perf_counter()
            for k in range(5):
                b.render_depth(Pose2D(0.0, 0.0, k * 1.2), camera, rng)
            timings[size] = (time.perf_counter() - t0) / 5 * 1e3
        finally:
            b.close()
    with capsys.disabled():
        print(f"\npybullet render: 224x224 {timings[224]:.1f} ms, 96x96 {timings[96]:.1f} ms")
    assert timings[96] < 1000 and timings[224] < 1000
