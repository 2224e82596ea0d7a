"""Gazebo world and bridge generation (Gazebo itself is not installed here: only the files are checked)."""

import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import yaml

from sim2real.contracts.scenario import RENDER_REACH_M, load_scenario
from sim2real.sim.gazebo.bridge import ROS_TOPICS, bridge_entries, bridge_yaml
from sim2real.sim.gazebo.sdf import GZ_TOPICS, world_sdf
from sim2real.sim.world import Obstacle, Pose2D, World, sample_world


@pytest.fixture(scope="module")
def scene():
    scenario = load_scenario("tiny")
    world = sample_world(scenario, np.random.default_rng(4))
    world.obstacles[:] = [Obstacle("box", 1.0, -0.5, 0.3, (0.2, 0.1), 0.5),
                          Obstacle("cylinder", -1.0, 0.8, 0.0, (0.25, 0.25), 0.7)]
    root = ET.fromstring(world_sdf(scenario, world, Pose2D(0.5, -0.25, 1.0)))
    return scenario, world, root


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split()]


def model(root, name):
    found = root.find(f"./world/model[@name='{name}']")
    assert found is not None, name
    return found


def test_world_has_the_systems_the_episode_loop_needs(scene):
    _, _, root = scene
    assert root.tag == "sdf" and root.get("version") == "1.9"
    plugins = {p.get("filename") for p in root.findall("./world/plugin")}
    assert {"gz-sim-physics-system", "gz-sim-sensors-system", "gz-sim-contact-system",
            "gz-sim-user-commands-system", "gz-sim-scene-broadcaster-system"} <= plugins
    assert float(root.find("./world/physics/max_step_size").text) > 0
    assert root.find("./world/model[@name='ground_plane']/link/collision/geometry/plane") is not None


def test_walls_and_obstacles_match_the_world(scene):
    _, world, root = scene
    for k, wall in enumerate(world.walls()):
        m = model(root, f"wall_{k}")
        assert m.find("static").text == "true"
        x, y, z, *_ = floats(m.find("pose").text)
        assert (x, y, z) == pytest.approx((wall.x, wall.y, wall.height / 2))
        size = floats(m.find("link/collision/geometry/box/size").text)
        assert size == pytest.approx([2 * wall.size[0], 2 * wall.size[1], wall.height])

    box = model(root, "obstacle_0")
    assert floats(box.find("pose").text) == pytest.approx([1.0, -0.5, 0.25, 0, 0, 0.3])
    assert floats(box.find("link/collision/geometry/box/size").text) == pytest.approx([0.4, 0.2, 0.5])
    cyl = model(root, "obstacle_1")
    assert float(cyl.find("link/collision/geometry/cylinder/radius").text) == pytest.approx(0.25)
    assert float(cyl.find("link/collision/geometry/cylinder/length").text) == pytest.approx(0.7)
    assert len(root.findall("./world/model")) == 1 + 4 + 2 + 1        # floor, walls, obstacles, robot


def test_robot_is_a_diff_drive_with_the_scenarios_geometry(scene):
    scenario, _, root = scene
    robot = model(root, "robot")
    assert floats(robot.find("pose").text) == pytest.approx([0.5, -0.25, 0, 0, 0, 1.0])
    chassis = robot.find("link[@name='chassis']")
    assert float(chassis.find("collision/geometry/cylinder/radius").text) == pytest.approx(scenario.robot.radius_m)
    assert float(chassis.find("inertial/mass").text) == pytest.approx(scenario.robot.mass_kg)
    joints = {j.get("name"): j for j in robot.findall("joint")}
    assert joints["left_wheel_joint"].get("type") == "revolute"
    assert joints["left_wheel_joint"].find("child").text == "left_wheel"
    drive = robot.find("plugin[@filename='gz-sim-diff-drive-system']")
    assert drive.find("left_joint").text == "left_wheel_joint" and drive.find("right_joint").text == "right_wheel_joint"
    assert float(drive.find("wheel_separation").text) == pytest.approx(scenario.robot.wheel_separation_m)
    assert float(drive.find("wheel_radius").text) == pytest.approx(scenario.robot.wheel_radius_m)
    assert drive.find("topic").text == GZ_TOPICS["cmd_vel"]
    truth = robot.find("plugin[@filename='gz-sim-odometry-publisher-system']")
    assert truth.find("odom_topic").text == GZ_TOPICS["ground_truth"]
    left_y = floats(robot.find("link[@name='left_wheel']/pose").text)[1]
    right_y = floats(robot.find("link[@name='right_wheel']/pose").text)[1]
    assert left_y - right_y == pytest.approx(scenario.robot.wheel_separation_m)


def test_depth_camera_matches_the_scenario_camera(scene):
    scenario, _, root = scene
    cam = scenario.camera
    sensor = root.find("./world/model[@name='robot']/link[@name='chassis']/sensor[@type='depth_camera']")
    assert sensor is not None and sensor.find("topic").text == GZ_TOPICS["depth"]
    assert float(sensor.find("update_rate").text) == pytest.approx(scenario.episode.control_hz)
    assert float(sensor.find("camera/horizontal_fov").text) == pytest.approx(math.radians(cam.hfov_deg), rel=1e-5)
    assert int(sensor.find("camera/image/width").text) == cam.width
    assert int(sensor.find("camera/image/height").text) == cam.height
    assert sensor.find("camera/image/format").text == "R_FLOAT32"
    # Far beyond the rated range: a reading past max_range_m is published ("too far"), not clipped to a hole.
    assert float(sensor.find("camera/clip/far").text) == pytest.approx(RENDER_REACH_M)
    assert RENDER_REACH_M > cam.max_range_m
    assert float(sensor.find("camera/clip/near").text) <= cam.min_range_m
    # Pose relative to the chassis link: at the front edge, mount height above the floor, pitched down.
    chassis_z = floats(root.find("./world/model[@name='robot']/link[@name='chassis']/pose").text)[2]
    x, y, z, roll, pitch, yaw = floats(sensor.find("pose").text)
    assert (x, y, z + chassis_z) == pytest.approx((scenario.robot.radius_m, 0.0, cam.mount_height_m))
    assert pitch == pytest.approx(math.radians(cam.pitch_deg), rel=1e-5) and roll == yaw == 0
    bumper = root.find("./world/model[@name='robot']/link[@name='chassis']/sensor[@type='contact']")
    assert bumper.find("contact/collision").text == "chassis_collision"
    assert bumper.find("contact/topic").text == GZ_TOPICS["contacts"]


def test_empty_world_is_still_valid():
    scenario = load_scenario("tiny")
    root = ET.fromstring(world_sdf(scenario, World((3.0, 5.0), 0.5, 0.1)))
    assert not root.findall("./world/model[@name='obstacle_0']")
    assert len(root.findall("./world/model")) == 6


def test_bridge_maps_depth_cmd_vel_and_clock():
    entries = yaml.safe_load(bridge_yaml())
    assert entries == bridge_entries()
    topics = {e["ros_topic_name"]: e for e in entries if "ros_topic_name" in e}
    depth = topics[ROS_TOPICS["depth"]]
    assert (depth["gz_topic_name"], depth["ros_type_name"], depth["gz_type_name"], depth["direction"]) == \
           (GZ_TOPICS["depth"], "sensor_msgs/msg/Image", "gz.msgs.Image", "GZ_TO_ROS")
    cmd = topics["/cmd_vel"]
    assert (cmd["gz_topic_name"], cmd["ros_type_name"], cmd["direction"]) == \
           (GZ_TOPICS["cmd_vel"], "geometry_msgs/msg/Twist", "ROS_TO_GZ")
    clock = topics["/clock"]
    assert (clock["ros_type_name"], clock["gz_type_name"], clock["direction"]) == \
           ("rosgraph_msgs/msg/Clock", "gz.msgs.Clock", "GZ_TO_ROS")
    services = {e["service_name"]: e for e in entries if "service_name" in e}
    assert services["/world/sim2real/control"]["ros_type_name"] == "ros_gz_interfaces/srv/ControlWorld"
    assert set(GZ_TOPICS) >= {k for k in ROS_TOPICS}


def test_backend_says_where_it_runs_without_gazebo(monkeypatch):
    from sim2real.sim.gazebo.backend import GazeboBackend

    assert GazeboBackend.name == "gazebo" and GazeboBackend.can_drive
    monkeypatch.setenv("PATH", "")
    with pytest.raises(RuntimeError, match="gazebo-eval"):
        GazeboBackend(load_scenario("tiny"))
