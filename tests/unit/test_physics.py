"""Physics and actuator randomization: drawn per episode, honoured by PyBullet, mapped or refused by Gazebo."""

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

pytest.importorskip("pybullet")

from helpers_eval import ForwardPolicy  # noqa: E402
from sim2real.contracts.actions import Twist  # noqa: E402
from sim2real.contracts.scenario import ScenarioError, load_scenario, parse_scenario  # noqa: E402
from sim2real.eval.evaluate import run_episode  # noqa: E402
from sim2real.sim.base import UnsupportedScenario  # noqa: E402
from sim2real.sim.gazebo.sdf import check_physics, world_sdf  # noqa: E402
from sim2real.sim.physics import NOMINAL, CommandLink, MotorModel, RobotPhysics, sample_physics  # noqa: E402
from sim2real.sim.pybullet_backend import PybulletBackend  # noqa: E402
from sim2real.sim.world import Pose2D, World, sample_world  # noqa: E402


def with_physics(name: str = "tiny", **physics):
    data = load_scenario(name).to_dict()
    data["physics"] = {k: list(v) for k, v in physics.items()}
    return parse_scenario(data)


def drive(physics: RobotPhysics, commands: list[tuple[Twist, float]]) -> Pose2D:
    """The pose after ``commands`` in an empty room, from the origin facing +x."""
    scenario = load_scenario("tiny")
    backend = PybulletBackend(scenario)
    try:
        backend.set_physics(physics)
        backend.load(World(arena_size=(8.0, 8.0), wall_height=0.5, wall_thickness=0.1, obstacles=[]))
        backend.reset_robot(Pose2D(0.0, 0.0, 0.0))
        for twist, seconds in commands:
            backend.step(twist, seconds)
        return backend.robot_pose()
    finally:
        backend.close()


def test_absent_keys_are_nominal_and_draws_stay_in_their_ranges():
    assert sample_physics(load_scenario("tiny").physics, np.random.default_rng(0)) == NOMINAL
    spec = load_scenario("default").physics
    for seed in range(20):
        drawn = sample_physics(spec, np.random.default_rng(seed))
        for key in spec.keys():
            low, high = getattr(spec, key)
            values = getattr(drawn, key)
            assert all(low <= v <= high for v in (values if isinstance(values, tuple) else (values,))), key


@pytest.mark.parametrize("key, value, fragment", [
    ("drop_prob", [0.0, 0.95], "0.95 is above 0.9"),
    ("wheel_friction", [1.2, 0.7], "low 1.2 is above high 0.7"),
    ("latency_ms", [0.0, 5000.0], "5000.0 is above 1000"),
    ("motor_time_constant_s", [-0.1, 0.1], "-0.1 is below 0"),
])
def test_every_key_is_bounded_and_named(key, value, fragment):
    data = load_scenario("tiny").to_dict()
    data["physics"] = {key: value}
    with pytest.raises(ScenarioError, match=rf"'physics\.{key}'.*{fragment}"):
        parse_scenario(data)


FORWARD = Twist(0.5, 0.0)
LEFT = Twist(0.0, 0.5)


def test_pybullet_honours_every_backend_key():
    plan = [(FORWARD, 0.3), (LEFT, 0.3), (FORWARD, 0.3)]
    nominal = drive(NOMINAL, plan)
    assert abs(nominal.y) < 0.05 and nominal.x > 0.25
    for changed in (RobotPhysics(wheel_friction=0.05), RobotPhysics(mass_scale=4.0),
                    RobotPhysics(inertia_scale=4.0, mass_scale=4.0), RobotPhysics(wheel_speed_error=(-0.3, 0.3)),
                    RobotPhysics(motor_time_constant_s=0.2), RobotPhysics(wheel_accel_limit_mps2=0.5)):
        moved = drive(changed, plan)
        assert math.hypot(moved.x - nominal.x, moved.y - nominal.y) + abs(moved.yaw - nominal.yaw) > 5e-3, changed


def test_a_wheel_gain_error_curves_a_straight_command_and_motor_lag_costs_distance():
    curved = drive(RobotPhysics(wheel_speed_error=(-0.2, 0.2)), [(FORWARD, 1.0)])
    assert curved.yaw > 0.2                                 # the right wheel is faster: it veers left
    straight = drive(NOMINAL, [(FORWARD, 0.4)])
    lagging = drive(RobotPhysics(motor_time_constant_s=0.2), [(FORWARD, 0.4)])
    limited = drive(RobotPhysics(wheel_accel_limit_mps2=0.5), [(FORWARD, 0.4)])
    assert lagging.x < straight.x - 0.05
    assert limited.x == pytest.approx(0.5 * 0.5 * 0.4 ** 2, abs=0.01)   # rim accel 0.5 m/s² never saturates


def test_motor_model_and_command_link():
    motor = MotorModel(RobotPhysics(motor_time_constant_s=0.1), wheel_radius_m=0.05)
    assert motor.advance((10.0, -10.0), 0.1) == pytest.approx((10 * (1 - math.exp(-1)), -10 * (1 - math.exp(-1))))
    limited = MotorModel(RobotPhysics(wheel_accel_limit_mps2=1.0), wheel_radius_m=0.05)
    assert limited.advance((10.0, 0.0), 0.1) == pytest.approx((2.0, 0.0))   # 1 m/s² / 0.05 m * 0.1 s
    link = CommandLink(RobotPhysics(latency_ms=50, latency_jitter_ms=30), extra_ms=20, rng=np.random.default_rng(0))
    arrivals = [link.send(k * 0.1) for k in range(50)]
    assert all(0.07 <= a - k * 0.1 <= 0.1 + 1e-9 for k, a in enumerate(arrivals))
    assert arrivals == sorted(arrivals)                      # in order, whatever the jitter
    lossy = CommandLink(RobotPhysics(drop_prob=0.5), extra_ms=0, rng=np.random.default_rng(0))
    assert not lossy.instant and 10 < sum(lossy.send(0.0) is None for _ in range(100)) < 90
    assert CommandLink(NOMINAL, 0.0, np.random.default_rng(0)).instant


def test_physics_do_not_change_the_episodes_world_and_are_recorded():
    plain = load_scenario("tiny")
    shaken = with_physics(latency_ms=(80, 80), drop_prob=(0.5, 0.5), wheel_speed_error=(-0.3, 0.3))
    records = []
    for scenario in (plain, shaken):
        backend = PybulletBackend(scenario)
        try:
            records.append(run_episode(backend, ForwardPolicy(), scenario, seed=3, index=1))
        finally:
            backend.close()
    a, b = records
    assert a["start"] == b["start"] and a["obstacles"] == b["obstacles"]
    assert a["physics"] == NOMINAL.to_dict()
    assert b["physics"]["latency_ms"] == 80 and b["physics"]["drop_prob"] == 0.5
    assert a["trajectory"] != b["trajectory"]


def test_gazebo_maps_what_it_can_and_refuses_the_rest_by_name():
    with pytest.raises(UnsupportedScenario, match=r"physics\.wheel_speed_error, physics\.motor_time_constant_s"):
        check_physics(load_scenario("default"))
    scenario = with_physics(wheel_friction=(0.5, 0.5), mass_scale=(2, 2), wheel_accel_limit_mps2=(1.5, 1.5),
                            latency_ms=(0, 40), drop_prob=(0, 0.1))
    check_physics(scenario)
    physics = RobotPhysics(wheel_friction=0.5, mass_scale=2.0, inertia_scale=1.5, wheel_accel_limit_mps2=1.5)
    world = sample_world(scenario, np.random.default_rng(1))
    root = ET.fromstring(world_sdf(scenario, world, physics=physics))
    robot = root.find("./world/model[@name='robot']")
    chassis = robot.find("./link[@name='chassis']/inertial")
    assert float(chassis.find("mass").text) == pytest.approx(2 * scenario.robot.mass_kg)
    r, h, m = scenario.robot.radius_m, scenario.robot.height_m, 2 * scenario.robot.mass_kg
    assert float(chassis.find("inertia/izz").text) == pytest.approx(1.5 * 0.5 * m * r * r, rel=1e-5)
    assert float(robot.find("./link[@name='left_wheel']/collision/surface/friction/ode/mu").text) == 0.5
    drive_plugin = robot.find("./plugin[@name='gz::sim::systems::DiffDrive']")
    assert float(drive_plugin.find("max_linear_acceleration").text) == 1.5
    assert float(drive_plugin.find("min_angular_acceleration").text) == pytest.approx(
        -2 * 1.5 / scenario.robot.wheel_separation_m)
    assert h > 0
    with pytest.raises(UnsupportedScenario, match="physics.motor_time_constant_s"):
        world_sdf(with_physics(motor_time_constant_s=(0.1, 0.1)), world)


def test_evaluating_refused_keys_on_gazebo_is_an_error_before_any_episode():
    from sim2real.eval.evaluate import EvalConfig, evaluate

    with pytest.raises(UnsupportedScenario, match="physics.wheel_speed_error, physics.motor_time_constant_s"):
        evaluate("expert", EvalConfig(scenario="default", episodes=1, backend="gazebo"), progress=False)


def test_a_world_with_mapped_physics_passes_the_sdformat_checker(tmp_path):
    import shutil
    import subprocess

    if shutil.which("ign") is None:
        pytest.skip("ign (ignition-tools, sdformat-sdf) is not installed: make test installs it")
    scenario = with_physics(wheel_friction=(0.5, 0.5), mass_scale=(2, 2), wheel_accel_limit_mps2=(1.5, 1.5))
    world = sample_world(scenario, np.random.default_rng(1))
    path = tmp_path / "world.sdf"
    path.write_text(world_sdf(scenario, world, physics=RobotPhysics(wheel_friction=0.5, mass_scale=2.0,
                                                                   inertia_scale=1.5, wheel_accel_limit_mps2=1.5)))
    checked = subprocess.run(["ign", "sdf", "-k", str(path)], capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0 and "Valid" in checked.stdout, checked.stdout + checked.stderr
