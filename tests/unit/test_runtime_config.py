"""What ships for the robot besides the code: the Fast DDS profile, the node's parameters file, and
`sim2real replay` running as the node runs (its parameters, its thread defaults)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from dataclasses import fields

import pytest
import yaml
from helpers_models import depth_scene, tiny_model  # noqa: E402
from sim2real.runtime import middleware
from sim2real.runtime.cli import main
from sim2real.runtime.node import NODE_NAME, NodeParams
from sim2real.runtime.params_file import read_params_file
from sim2real.runtime.replay import record_images
from sim2real.runtime.ros_image import encode_depth

NS = {"dds": "http://www.eprosima.com"}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model"))


def test_fastdds_profile_gives_every_participant_a_16_mb_shared_memory_segment():
    root = ET.parse(middleware.FASTDDS_PROFILE).getroot()
    transports = {t.findtext("dds:transport_id", namespaces=NS): t
                  for t in root.iterfind("dds:profiles/dds:transport_descriptors/dds:transport_descriptor", NS)}
    shm = [t for t in transports.values() if t.findtext("dds:type", namespaces=NS) == "SHM"]
    assert len(shm) == 1 and int(shm[0].findtext("dds:segment_size", namespaces=NS)) >= 1280 * 720 * 2 * 4
    assert any(t.findtext("dds:type", namespaces=NS) == "UDPv4" for t in transports.values()), \
        "UDP stays for discovery and for other machines"
    (participant,) = root.iterfind("dds:profiles/dds:participant", NS)
    assert participant.get("is_default_profile") == "true"
    used = [e.text for e in participant.iterfind("dds:rtps/dds:userTransports/dds:transport_id", NS)]
    assert sorted(used) == sorted(transports)
    assert participant.findtext("dds:rtps/dds:useBuiltinTransports", namespaces=NS) == "false"


@pytest.mark.parametrize("environ, added", [
    ({}, {middleware.PROFILE_VARIABLE: str(middleware.FASTDDS_PROFILE)}),
    ({"ROS_DISTRO": "humble"}, {middleware.PROFILE_VARIABLE: str(middleware.FASTDDS_PROFILE),
                                middleware.LEGACY_PROFILE_VARIABLE: str(middleware.FASTDDS_PROFILE)}),
    ({middleware.PROFILE_VARIABLE: "/robot/dds.xml"}, {}),
    ({middleware.PROFILE_VARIABLE: "/robot/dds.xml", "ROS_DISTRO": "humble"},
     {middleware.LEGACY_PROFILE_VARIABLE: "/robot/dds.xml"}),
    ({middleware.LEGACY_PROFILE_VARIABLE: "/robot/dds.xml"}, {middleware.PROFILE_VARIABLE: "/robot/dds.xml"}),
])
def test_profile_environment_keeps_a_deployments_own_profile(environ, added):
    assert middleware.profile_environment(environ) == added


def test_use_large_image_profile_sets_this_process_once(monkeypatch):
    for name in (middleware.PROFILE_VARIABLE, middleware.LEGACY_PROFILE_VARIABLE, "ROS_DISTRO"):
        monkeypatch.delenv(name, raising=False)
    assert middleware.use_large_image_profile() == str(middleware.FASTDDS_PROFILE)
    assert os.environ[middleware.PROFILE_VARIABLE] == str(middleware.FASTDDS_PROFILE)
    monkeypatch.setenv(middleware.PROFILE_VARIABLE, "/robot/dds.xml")
    assert middleware.use_large_image_profile() == "/robot/dds.xml"


def test_shipped_parameters_file_covers_the_node_with_its_types():
    document = yaml.safe_load(middleware.NODE_PARAMS.read_text())
    (key,) = document
    assert key.endswith(f"/{NODE_NAME}")
    values = read_params_file(middleware.NODE_PARAMS)
    defaults = NodeParams()
    left_to_flags = {"model_path", "backend", "shadow"}
    assert set(values) == {f.name for f in fields(NodeParams)} - left_to_flags
    assert {name: type(value) for name, value in values.items()} == \
        {name: type(getattr(defaults, name)) for name in values}
    assert values["expected_rate_hz"] == 30.0
    assert {n: v for n, v in values.items() if n != "expected_rate_hz"} == \
        {n: getattr(defaults, n) for n in values if n != "expected_rate_hz"}, "the file states the defaults"
    NodeParams(model_path="m.onnx", **values).validate()


@pytest.mark.parametrize("text, message", [
    ("sim2real_policy:\n  ros__parameters:\n    forward_speed: 1\n", "forward_speed must be a float literal"),
    ("/**:\n  ros__parameters:\n    top_speed: 1.0\n", "unknown parameter 'top_speed'"),
    ("sim2real_policy:\n  forward_speed: 0.3\n", "has no ros__parameters mapping"),
    ("- a\n- b\n", "expected '<node>: {ros__parameters: {...}}'"),
    ("sim2real_policy: [unclosed\n", "is not YAML"),
])
def test_a_bad_parameters_file_is_one_line_and_exit_2(tmp_path, model, capsys, text, message):
    path = tmp_path / "node.yaml"
    path.write_text(text)
    assert main(["replay", "--bag", str(tmp_path / "bag"), "--model", str(model), "--params-file", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sim2real replay: error: ") and message in err


def test_other_nodes_sections_are_ignored(tmp_path):
    path = tmp_path / "robot.yaml"
    path.write_text("camera:\n  ros__parameters:\n    fps: 30\n"
                    "/**:\n  ros__parameters:\n    forward_speed: 0.4\n"
                    "/robot/sim2real_policy:\n  ros__parameters:\n    forward_speed: 0.3\n")
    assert read_params_file(path) == {"forward_speed": 0.3}


def test_replay_runs_with_the_robots_parameters_file(tmp_path, capsys):
    # forward_bias -0.2: an open view with 60 % holes still drives (forward 0.46 against 0 for a turn)
    model = tiny_model(tmp_path / "model", forward_bias=-0.2)
    bag = tmp_path / "drive"
    half_invalid = depth_scene("open")
    half_invalid[: half_invalid.shape[0] * 3 // 5] = float("nan")      # 60 % no return
    frames = [depth_scene("open"), half_invalid, depth_scene("obstacle_left")]
    record_images(bag, ((1 + i, encode_depth(d, "16UC1")) for i, d in enumerate(frames)))
    params = tmp_path / "node.yaml"
    params.write_text("/**/sim2real_policy:\n  ros__parameters:\n"
                      "    forward_speed: 0.3\n    turn_rate: 0.4\n    max_invalid_fraction: 0.7\n")
    out = tmp_path / "a.jsonl"
    assert main(["replay", "--bag", str(bag), "--model", str(model), "--params-file", str(params),
                 "--out", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["action"], r["linear_x"], r["angular_z"]) for r in records] == \
        [("forward", 0.3, 0.0), ("forward", 0.3, 0.0), ("right", 0.0, -0.4)]
    capsys.readouterr()
    assert main(["replay", "--bag", str(bag), "--model", str(model), "--params-file", str(params),
                 "--max-invalid-fraction", "0.5", "--out", str(out)]) == 0      # a flag wins over the file
    assert [json.loads(line)["action"] for line in out.read_text().splitlines()] == ["forward", "stop", "right"]


def test_replay_runs_with_the_nodes_thread_defaults(tmp_path, model):
    bag = tmp_path / "drive"
    record_images(bag, [(1, encode_depth(depth_scene("open"), "16UC1"))])
    code = f"""
import ctypes, json, sys
from pathlib import Path
from sim2real.runtime.cli import main
assert main(["replay", "--bag", {str(bag)!r}, "--model", {str(model)!r}]) == 0
from sim2real.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine
blas = [line.split()[-1] for line in open("/proc/self/maps") if "openblas" in line]
getter = next(getattr(ctypes.CDLL(blas[0]), name) for name in
              ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads")
              if hasattr(ctypes.CDLL(blas[0]), name))
ort = OnnxRuntimeEngine(Path({str(model)!r})).session.get_session_options().intra_op_num_threads
print(json.dumps({{"blas": getter(), "ort": ort}}), file=sys.stderr)
"""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "SIM2REAL_ORT_THREADS",
                                                             "OMP_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stderr.strip().splitlines()[-1]) == {"blas": 1, "ort": 1}
