"""MuJoCo depth rendering against geometry worked out by hand (tiny scenario: 64x64, 87° hfov)."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("mujoco")

from sim2real.contracts.camera import camera_rotation, ray_directions  # noqa: E402
from sim2real.contracts.scenario import RENDER_REACH_M, load_scenario  # noqa: E402
from sim2real.sim import registry  # noqa: E402
from sim2real.sim.mujoco_backend import MujocoBackend  # noqa: E402
from sim2real.sim.world import CameraSample, Obstacle, Pose2D, World  # noqa: E402

ORIGIN = Pose2D(0.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def scenario():
    return load_scenario("tiny")


def backend_for(scenario, *obstacles: Obstacle, size: float = 10.0) -> MujocoBackend:
    backend = registry.create("mujoco", scenario)
    backend.load(World((size, size), 0.6, 0.1, list(obstacles)))
    return backend


def ideal_camera(scenario, pitch_deg: float = 0.0) -> CameraSample:
    return CameraSample(scenario.camera.mount_height_m, pitch_deg, scenario.camera.hfov_deg, 0.0, 0.0)


def render(backend, camera, pose=ORIGIN) -> np.ndarray:
    return backend.render_depth(pose, camera, np.random.default_rng(0))


def centre(depth: np.ndarray) -> np.ndarray:
    h, w = depth.shape
    return depth[h // 2 - 1:h // 2 + 1, w // 2 - 1:w // 2 + 1]


def test_registry_builds_a_render_only_backend(scenario):
    backend = registry.create("mujoco", scenario)
    assert isinstance(backend, MujocoBackend) and not backend.can_drive
    with pytest.raises(RuntimeError, match="before load"):
        render(backend, ideal_camera(scenario))


def test_wall_ahead_gives_its_distance_as_z_depth(scenario):
    distance = 1.7
    face_x = scenario.robot.radius_m + distance
    wall = Obstacle("box", face_x + 0.05, 0.0, 0.0, (0.05, 3.0), 3.0)
    depth = render(backend_for(scenario, wall), ideal_camera(scenario))
    assert depth.dtype == np.float32 and depth.shape == (scenario.camera.height, scenario.camera.width)
    np.testing.assert_allclose(centre(depth), distance, atol=1e-4)
    # A fronto-parallel wall has the same z-depth across the image, not just at its centre.
    np.testing.assert_allclose(depth[: scenario.camera.height // 2], distance, atol=1e-4)


@pytest.mark.parametrize("obstacle, distance", [
    (Obstacle("cylinder", 2.0, 0.0, 0.0, (0.3, 0.3), 1.0), 2.0 - 0.3),
    (Obstacle("box", 3.0, 0.0, math.pi / 2, (0.05, 1.0), 1.0), 3.0 - 1.0),
])
def test_shapes_and_yaw_follow_the_world_convention(scenario, obstacle, distance):
    depth = render(backend_for(scenario, obstacle), ideal_camera(scenario))
    np.testing.assert_allclose(centre(depth), distance - scenario.robot.radius_m, atol=2e-3)


def test_nothing_within_the_render_reach_is_no_return(scenario):
    depth = render(backend_for(scenario, size=2 * RENDER_REACH_M + 4.0), ideal_camera(scenario))
    assert np.isnan(depth[: scenario.camera.height // 2]).all()


def test_a_wall_beyond_the_max_range_reads_its_distance(scenario):
    """A real camera publishes a reading beyond its rated range ("too far", free space), not a hole."""
    distance = 2.5 * scenario.camera.max_range_m
    wall = Obstacle("box", scenario.robot.radius_m + distance + 0.05, 0.0, 0.0, (0.05, 19.0), 19.0)
    depth = render(backend_for(scenario, wall, size=40.0), ideal_camera(scenario))
    np.testing.assert_allclose(depth[: scenario.camera.height // 2], distance, rtol=1e-4)


def test_floor_fills_the_lower_rows_when_pitched_down(scenario):
    pitch = 20.0
    cam = scenario.camera
    depth = render(backend_for(scenario, size=30.0), ideal_camera(scenario, pitch))
    rays = ray_directions(cam.width, cam.height, cam.hfov_deg)[-1]
    world_rays = rays @ camera_rotation(0.0, math.radians(pitch)).T
    expected = cam.mount_height_m / -world_rays[:, 2] * rays[:, 0]
    np.testing.assert_allclose(depth[-1], expected, rtol=1e-4)
    assert np.isfinite(depth[-cam.height // 4:]).all()


def test_sensor_model_is_applied(scenario):
    wall = Obstacle("box", 2.0, 0.0, 0.0, (0.05, 3.0), 1.0)
    backend = backend_for(scenario, wall)
    noisy = CameraSample(scenario.camera.mount_height_m, 0.0, scenario.camera.hfov_deg, 0.01, 0.2)
    depth = render(backend, noisy)
    ideal = backend.render_ideal(ORIGIN, noisy)
    dropped = np.isnan(depth) & np.isfinite(ideal)
    assert 0.1 < dropped.mean() < 0.3
    assert not np.allclose(depth[~np.isnan(depth)], ideal[~np.isnan(depth)])
    np.testing.assert_array_equal(render(backend, noisy), depth)


def test_fast_path_matches_exact_raycasting_on_randomized_worlds():
    """Floor and arena walls in closed form + MuJoCo for obstacles == MuJoCo for everything."""
    from sim2real.datagen.generate import sample_pose
    from sim2real.sim.world import sample_camera, sample_world

    default = load_scenario("default")
    spec = default.model_copy(update={"camera": default.camera.model_copy(update={"width": 96, "height": 96})})
    backend = MujocoBackend(spec)
    rng = np.random.default_rng(11)
    for _ in range(4):
        world = sample_world(spec, rng)
        backend.load(world)
        for _ in range(8):
            pose, camera = sample_pose(world, spec.robot.radius_m, rng), sample_camera(spec, rng)
            fast, exact = backend.render_ideal(pose, camera), backend.render_ideal(pose, camera, exact=True)
            np.testing.assert_array_equal(np.isnan(fast), np.isnan(exact))
            np.testing.assert_allclose(fast, exact, atol=1e-5)


def test_thin_pole_and_wall_segment_render_at_their_distance(scenario):
    pole = Obstacle("cylinder", 1.5, 0.0, 0.0, (0.03, 0.03), 1.0, "pole")
    depth = render(backend_for(scenario, pole), ideal_camera(scenario))
    # The centre pixels look half a pixel off-axis: on a 3 cm pole that is up to 7 mm deeper.
    np.testing.assert_allclose(centre(depth), 1.5 - 0.03 - scenario.robot.radius_m, atol=8e-3)
    assert np.isfinite(depth[: scenario.camera.height // 2]).sum() < 0.1 * depth.size, "thin: a narrow stripe"
    segment = Obstacle("box", 2.0, 0.0, math.pi / 2, (0.8, 0.05), 0.5, "wall")   # across the view, 10 cm thick
    depth = render(backend_for(scenario, segment), ideal_camera(scenario))
    np.testing.assert_allclose(centre(depth), 2.0 - 0.05 - scenario.robot.radius_m, atol=2e-3)


def test_camera_roll_tilts_the_horizon(scenario):
    """Looking at the floor with the camera rolled, the floor's near edge is no longer level."""
    backend = backend_for(scenario, size=30.0)
    level = render(backend, CameraSample(0.25, 20.0, 87.0, 0.0, 0.0))
    rolled = render(backend, CameraSample(0.25, 20.0, 87.0, 0.0, 0.0, roll_deg=10.0))
    first_floor_row = lambda d: np.argmax(np.isfinite(d), axis=0)   # noqa: E731
    assert np.ptp(first_floor_row(level)) == 0
    rows = first_floor_row(rolled)
    assert rows[0] > rows[-1], "positive roll: the horizon drops on the left"
