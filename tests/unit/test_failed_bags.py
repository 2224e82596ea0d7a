"""`eval --failed-bags`: each failed episode becomes an MCAP bag in standard ROS 2 schemas; replay reads it back."""

import json

import pytest
import yaml

pytest.importorskip("pybullet")
pytest.importorskip("rosbags")

from helpers_models import tiny_model  # noqa: E402
from sim2real.cli import main  # noqa: E402
from sim2real.contracts.hysteresis import HysteresisParams  # noqa: E402
from sim2real.contracts.scenario import load_scenario  # noqa: E402
from sim2real.eval.bags import TOPICS, TYPES  # noqa: E402


@pytest.fixture(scope="module")
def failed(tmp_path_factory):
    """Two episodes of the tiny model (with its turn hysteresis) that cannot succeed: 2 m needed in 3 s."""
    root = tmp_path_factory.mktemp("bags")
    data = load_scenario("tiny").to_dict()
    data["episode"].update(duration_s=3.0, min_progress_m=2.0)
    scenario = root / "hopeless.yaml"
    scenario.write_text(yaml.safe_dump(data))
    model = tiny_model(root / "model", runtime=HysteresisParams(2))
    out = root / "eval.json"
    assert main(["eval", "--model", str(model), "--scenario", str(scenario), "--episodes", "2", "--seed", "7",
                 "--json", str(out), "--failed-bags", str(root / "failed")]) == 0
    return root, model, json.loads(out.read_text())


def read_bag(path):
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    messages = {}
    with AnyReader([path], default_typestore=get_typestore(Stores.LATEST)) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        for connection, stamp, raw in reader.messages():
            messages.setdefault(connection.topic, []).append((stamp, reader.deserialize(raw, connection.msgtype)))
    return types, messages


def test_every_failed_episode_is_a_bag_in_standard_schemas(failed):
    root, _, result = failed
    assert result["successes"] == 0
    bags = sorted(p.name for p in (root / "failed").iterdir())
    assert bags == ["episode_00000", "episode_00001"]             # nothing half-written beside them
    for record in result["per_episode"]:
        types, messages = read_bag(root / "failed" / f"episode_{record['index']:05d}")
        assert types == {TOPICS[key]: TYPES[key] for key in TOPICS}
        steps = record["steps"]
        for topic in ("/camera/depth/image_raw", "/camera/depth/camera_info", "/cmd_vel", "/odom", "/tf"):
            assert len(messages[topic]) == steps, topic
        image = messages["/camera/depth/image_raw"][0][1]
        assert (image.encoding, image.width, image.height) == ("32FC1", 64, 64)
        assert image.header.frame_id == "camera_depth_optical_frame"
        (static,) = messages["/tf_static"]
        assert [t.child_frame_id for t in static[1].transforms] == ["camera_link", "camera_depth_optical_frame"]
        markers = messages["/obstacles"][0][1].markers
        assert {m.ns for m in markers} >= {"walls", "reason"} and len(markers) >= 4 + 1
        assert "progress" in next(m.text for m in markers if m.ns == "reason")
        start = messages["/odom"][0][1].pose.pose.position
        # the first odometry is the robot where the first image was taken: its start pose, settled on
        # its wheels by the physics (a fraction of a millimetre)
        assert [start.x, start.y] == pytest.approx(record["start"][:2], abs=1e-3)
        assert record["bag"].endswith(f"episode_{record['index']:05d}")


def test_replay_reads_a_failed_episode_and_commands_what_eval_did(failed, tmp_path, capsys):
    root, model, result = failed
    bag = root / "failed" / "episode_00001"
    _, messages = read_bag(bag)
    commanded = [round(msg.angular_z if hasattr(msg, "angular_z") else msg.angular.z, 6)
                 for _, msg in messages["/cmd_vel"]]
    out = tmp_path / "actions.jsonl"
    assert main(["replay", "--bag", str(bag), "--model", str(model), "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == result["per_episode"][1]["steps"] and summary["camera_intrinsics"] == "camera_info"
    assert summary["hysteresis"] == "2,0"
    replayed = [round(json.loads(line)["angular_z"], 6) for line in out.read_text().splitlines()]
    assert replayed == commanded


def test_failed_bags_needs_a_new_or_empty_folder(failed, capsys):
    root, _, _ = failed
    assert main(["eval", "--model", "spin", "--scenario", "tiny", "--episodes", "1",
                 "--failed-bags", str(root / "failed")]) == 2
    assert "must be a new or empty folder" in capsys.readouterr().err


def test_suite_puts_policy_and_expert_side_by_side(tmp_path, capsys):
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "smoke", "episodes": 2, "entries": [{"scenario": "tiny", "seed": 5}]}))
    assert main(["suite", "--model", "spin", "--suite", str(suite), "--out", str(tmp_path / "out")]) == 0
    result = json.loads((tmp_path / "out" / "suite.json").read_text())
    (row,) = result["rows"]
    assert row["policy"]["success_rate"] == 0.0 and row["expert"]["success_rate"] > 0
    assert row["difference"] == -row["expert"]["success_rate"] and row["difference_ci95"][1] > row["difference"]
    table = (tmp_path / "out" / "suite.md").read_text()
    expert = tmp_path / "out" / "tiny.expert.json"
    assert "| `tiny` (seed 5) | **0.00**" in table and expert.exists()
    written = expert.stat().st_mtime_ns                     # a second model reuses the expert's episodes
    assert main(["suite", "--model", "spin", "--suite", str(suite), "--out", str(tmp_path / "out")]) == 0
    assert expert.stat().st_mtime_ns == written
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"episodes": 2, "entries": [{"scenario": "nowhere", "seed": 1}]}))
    assert main(["suite", "--model", "spin", "--suite", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "scenario 'nowhere' is neither a file nor a built-in" in capsys.readouterr().err
