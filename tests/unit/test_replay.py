"""`sim2real replay`: record a small bag (MCAP and sqlite3) with rosbags, replay it through the policy."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_models import depth_scene, tiny_model  # noqa: E402
from sim2real.contracts.camera import Intrinsics  # noqa: E402
from sim2real.runtime.cli import main  # noqa: E402
from sim2real.runtime.replay import record_images  # noqa: E402
from sim2real.runtime.ros_image import RawImage, encode_depth  # noqa: E402

FRAMES = [  # (scene, encoding, big-endian, row padding) → expected action
    (("obstacle_left", "32FC1", False, 0), "right"),
    (("obstacle_right", "16UC1", False, 6), "left"),
    (("open", "32FC1", True, 4), "forward"),
    (("invalid", "32FC1", False, 0), "stop"),
    (("open", "16UC1", True, 0), "forward"),
]


def _frames():
    for index, ((scene, encoding, big, pad), _) in enumerate(FRAMES):
        yield 1_000_000_000 + index * 33_000_000, encode_depth(depth_scene(scene, 48, 64), encoding,
                                                                big_endian=big, row_padding=pad)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model"))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_record_then_replay_writes_actions_with_timings(tmp_path, model, storage, capsys):
    bag = tmp_path / f"drive_{storage}"
    assert record_images(bag, _frames(), storage=storage) == len(FRAMES)
    out_bag = tmp_path / "commands"
    code = main(["replay", "--bag", str(bag), "--model", str(model), "--out-bag", str(out_bag)])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["frames"] == len(FRAMES) and summary["model_sha256"]
    assert summary["actions"] == {"forward": 2, "left": 1, "right": 1, "stop": 1}
    assert set(summary["latency_ms"]) == {"read", "convert", "preprocess", "infer", "total"}
    records = [json.loads(line) for line in Path(summary["out"]).read_text().splitlines()]
    assert Path(summary["out"]) == tmp_path / f"drive_{storage}.actions.jsonl"
    assert [r["action"] for r in records] == [expected for _, expected in FRAMES]
    assert [r["t_ns"] for r in records] == [t for t, _ in _frames()] == [r["stamp_ns"] for r in records]
    stop = records[3]
    assert (stop["linear_x"], stop["angular_z"]) == (0.0, 0.0) and "no return" in stop["reason"]
    assert summary["camera_intrinsics"] == "assumed" and summary["left_right_ties"] == 0
    assert set(records[0]["timing_ms"]) == {"read", "convert", "preprocess", "infer", "total"}
    assert records[0]["angular_z"] == -0.5 and records[2]["linear_x"] == 0.5

    from rosbags.highlevel import AnyReader

    with AnyReader([out_bag]) as reader:
        twists = [reader.deserialize(raw, c.msgtype) for c, _, raw in reader.messages()]
    assert [(t.linear.x, t.angular.z) for t in twists] == [(r["linear_x"], r["angular_z"]) for r in records]


def test_replay_maps_images_by_the_bags_camera_info_or_explicit_intrinsics(tmp_path, model, capsys):
    """The bag's CameraInfo describes a camera far narrower than the model's: every frame is refused
    for its field of view; explicit intrinsics (the model's own field of view) win over it."""
    narrow = Intrinsics.from_fov(64, 48, 30.0)
    bag = tmp_path / "narrow"
    record_images(bag, _frames(), intrinsics=narrow)
    assert main(["replay", "--bag", str(bag), "--model", str(model), "--out", str(tmp_path / "a.jsonl")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["camera_intrinsics"] == "camera_info" and summary["actions"]["stop"] == len(FRAMES)
    assert any("field of view" in event for event in summary["failsafe_events"])
    wide = ",".join(str(v) for v in Intrinsics.from_fov(64, 48, 87.0).to_list())
    assert main(["replay", "--bag", str(bag), "--model", str(model), "--intrinsics", wide,
                 "--out", str(tmp_path / "b.jsonl")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["camera_intrinsics"] == "parameters"
    assert summary["actions"] == {"forward": 2, "left": 1, "right": 1, "stop": 1}
    assert main(["replay", "--bag", str(bag), "--model", str(model), "--intrinsics", "64,48,1,2"]) == 2
    assert capsys.readouterr().err.strip() == ("sim2real replay: error: intrinsics need 6 values "
                                               "WIDTH,HEIGHT,FX,FY,CX,CY, got 4")


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_each_image_can_carry_its_own_camera_info(tmp_path, model, storage, capsys):
    """Images of several cameras in one bag: each is mapped by the CameraInfo written just before it,
    so the narrow camera's frames are refused for their field of view and the others are served."""
    narrow, wide = Intrinsics.from_fov(64, 48, 30.0), Intrinsics.from_fov(64, 48, 87.0)
    cameras = [wide, narrow, wide, wide, narrow]
    bag = tmp_path / f"mixed_{storage}"
    items = ((stamp, raw, camera) for (stamp, raw), camera in zip(_frames(), cameras))
    assert record_images(bag, items, storage=storage) == len(FRAMES)
    out = tmp_path / "mixed.jsonl"
    assert main(["replay", "--bag", str(bag), "--model", str(model), "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["camera_intrinsics"] == "camera_info"
    records = [json.loads(line) for line in out.read_text().splitlines()]
    for record, camera, (_, expected) in zip(records, cameras, FRAMES):
        if camera is narrow:
            assert record["action"] == "stop" and "field of view" in record["reason"], record
        else:
            assert record["action"] == expected, record


def test_replay_of_a_single_mcap_file(tmp_path, model, capsys):
    bag = tmp_path / "single"
    record_images(bag, _frames(), topic="/front/depth", storage="mcap")
    (mcap,) = bag.glob("*.mcap")
    out = tmp_path / "actions.jsonl"
    assert main(["replay", "--bag", str(mcap), "--model", str(model), "--topic", "/front/depth",
                 "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] == len(FRAMES)
    assert len(out.read_text().splitlines()) == len(FRAMES)


def test_replay_bad_input_is_one_line_and_exit_2(tmp_path, model, capsys):
    assert main(["replay", "--bag", str(tmp_path / "absent"), "--model", str(model)]) == 2
    assert "bag not found" in capsys.readouterr().err
    bag = tmp_path / "bag"
    record_images(bag, [(1, RawImage(2, 2, "32FC1", 0, 8, bytes(16)))])
    assert main(["replay", "--bag", str(bag), "--model", str(model), "--topic", "/nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"sim2real replay: error: {bag} has no topic '/nope' "
                   f"(image topics in the bag: /camera/depth/image_raw)")
    assert main(["replay", "--bag", str(bag), "--model", str(tmp_path / "none.onnx")]) == 2
    assert "model not found" in capsys.readouterr().err
    not_a_bag = tmp_path / "notes.txt"
    not_a_bag.write_text("hello")
    assert main(["replay", "--bag", str(not_a_bag), "--model", str(model)]) == 2
    assert "not a readable ROS 2 bag" in capsys.readouterr().err
