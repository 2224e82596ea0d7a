"""The shipped node parameters file, loaded by `sim2real serve` through real rclpy (`--ros-args --params-file`).

The node gets the shipped ``node.yaml`` and then a site file on top (ROS 2 applies them in order),
plus a flag the site file overrides: the parameters in force are read back from the node's own
parameter service, and the node is driven on the topic the site file names.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from helpers_models import depth_scene, tiny_model  # noqa: E402
from helpers_ros import ros_environment  # noqa: E402
from sim2real.runtime.middleware import NODE_PARAMS
from sim2real.runtime.params_file import read_params_file
from sim2real.runtime.ros_image import encode_depth, fill_image_msg

rclpy = pytest.importorskip("rclpy")
pytestmark = pytest.mark.timeout(180)

SITE = """/**/sim2real_policy:
  ros__parameters:
    image_topic: /front/depth/image_raw
    forward_speed: 0.3
    expected_rate_hz: 15.0
"""


@pytest.fixture(scope="module")
def ros_env(tmp_path_factory):
    with ros_environment(tmp_path_factory.mktemp("roslog"), domain_base=20) as values:
        yield values


@pytest.fixture(scope="module")
def node(ros_env, tmp_path_factory):
    folder = tmp_path_factory.mktemp("node")
    model = tiny_model(folder / "model")
    site = folder / "site.yaml"
    site.write_text(SITE)
    command = [sys.executable, "-m", "sim2real.runtime.cli", "serve", "--model", str(model),
               "--forward-speed", "0.8", "--ros-args", "--params-file", str(NODE_PARAMS), "--params-file", str(site)]
    log_path = folder / "node.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    process.log_path = log_path
    yield process
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def client(node):
    from geometry_msgs.msg import Twist
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    context = rclpy.Context()
    rclpy.init(context=context)
    ros = rclpy.create_node("test_params_client", context=context)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(ros)
    ros.twists = []
    ros.create_subscription(Twist, "/cmd_vel", lambda m: ros.twists.append((m.linear.x, m.angular.z)), 10)
    ros.image_pub = ros.create_publisher(Image, "/front/depth/image_raw", qos_profile_sensor_data)
    ros.executor = executor
    yield ros
    ros.destroy_node()
    context.try_shutdown()


def _parameters(client, names: list[str], timeout: float = 60.0) -> dict:
    from rcl_interfaces.srv import GetParameters

    service = client.create_client(GetParameters, "/sim2real_policy/get_parameters")
    end = time.monotonic() + timeout
    while not service.service_is_ready():
        assert time.monotonic() < end, "the node's parameter service did not come up"
        client.executor.spin_once(timeout_sec=0.1)
    future = service.call_async(GetParameters.Request(names=names))
    client.executor.spin_until_future_complete(future, timeout_sec=timeout)
    values = future.result().values
    return {name: rclpy.parameter.parameter_value_to_python(value) for name, value in zip(names, values)}


def test_parameters_in_force_come_from_the_shipped_file_then_the_site_file(node, client):
    shipped = read_params_file(NODE_PARAMS)
    names = sorted(shipped)
    values = _parameters(client, names)
    assert node.poll() is None, node.log_path.read_text()
    expected = {**shipped, "image_topic": "/front/depth/image_raw", "forward_speed": 0.3, "expected_rate_hz": 15.0}
    assert values == expected


def test_the_node_serves_on_the_files_topic_at_the_files_speed(node, client):
    from sensor_msgs.msg import Image

    msg = fill_image_msg(Image(),
                         encode_depth(depth_scene("open"), "16UC1"))
    end = time.monotonic() + 30
    while time.monotonic() < end and (0.3, 0.0) not in client.twists:
        client.image_pub.publish(msg)
        pause = time.monotonic() + 0.1
        while time.monotonic() < pause:
            client.executor.spin_once(timeout_sec=0.02)
    assert (0.3, 0.0) in client.twists, (client.twists[-5:], node.log_path.read_text()[-2000:])
    assert (0.8, 0.0) not in client.twists and (0.5, 0.0) not in client.twists
