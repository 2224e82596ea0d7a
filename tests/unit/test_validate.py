"""`sim2real validate` on real rosbag2 recordings (MCAP and sqlite3) written with a scripted driver.

The tiny model's answer to each scene is known (``EXPECTED_ACTION``), and so is the driver's
command for each frame, so agreement, the unsafe rate and the confusion matrix are known exactly.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import fields

import numpy as np
import pytest
from helpers_bags import (
    CMD_TOPIC,
    IMAGE,
    INFO_TOPIC,
    TWIST_STAMPED,
    Message,
    Segment,
    drive,
    image_msg,
    write_bag,
    write_drive,
)
from helpers_models import EXPECTED_ACTION, depth_scene, tiny_model
from sim2real.cli import build_parser, main
from sim2real.contracts.actions import ACTIONS
from sim2real.recordings.validate import ValidateSettings

# 100 frames at 10 Hz: the driver agrees with the model on 80 moving frames, turns the wrong way on
# 10, and stands still on 10 open frames (where the model drives: unsafe).
DRIVE = [Segment("open", "forward", 30), Segment("obstacle_left", "right", 15), Segment("open", "forward", 20),
         Segment("obstacle_right", "left", 15), Segment("open", "stop", 10), Segment("obstacle_left", "left", 10)]
LABEL = {"forward": 0, "left": 1, "right": 2, "stop": 3}


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def eager(tmp_path_factory):
    """The tiny model with no forward penalty: it drives forward past near obstacles."""
    return tiny_model(tmp_path_factory.mktemp("eager"), forward_bias=0.0)


def expected_figures(frames, shift: int = 0) -> tuple[float, float, np.ndarray]:
    """Agreement, unsafe rate and confusion matrix when each frame is labelled by the command of the
    frame ``shift`` before it (what a lag ``shift`` frames too short does)."""
    labels = [LABEL[frames[max(0, i - shift)].command] for i in range(len(frames))]
    answers = [EXPECTED_ACTION[f.scene] for f in frames]
    matrix = np.zeros((4, 4), int)
    for label, answer in zip(labels, answers):
        matrix[label, answer] += 1
    moving = [(la, an) for la, an in zip(labels, answers) if la != 3]
    agreement = sum(la == an for la, an in moving) / len(moving)
    unsafe = sum(an == 0 and la != 0 for la, an in zip(labels, answers)) / len(labels)
    return agreement, unsafe, matrix


def run(args, capsys):
    code = main(["validate", *map(str, args), "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_agreement_unsafe_rate_and_confusion_are_the_known_ones(tmp_path, model, storage, capsys):
    encoding = "16UC1" if storage == "mcap" else "32FC1"
    bag, frames = write_drive(tmp_path / f"drive_{storage}", DRIVE, storage=storage, encoding=encoding)
    out, report = tmp_path / "v.json", tmp_path / "v.html"
    code, stdout, err = run([bag, "--model", model, "--json", out, "--report", report, "--block", 1], capsys)
    assert code == 0, err
    result = json.loads(out.read_text())
    first = result["models"][0]
    agreement, unsafe, matrix = expected_figures(frames)
    assert (agreement, unsafe) == (80 / 90, 10 / 100)
    assert first["agreement"]["value"] == round(agreement, 4) and first["agreement"]["frames"] == 90
    assert first["unsafe_rate"]["value"] == round(unsafe, 4) and first["unsafe_rate"]["unsafe"] == 10
    assert first["confusion"]["matrix"] == matrix.tolist()
    lo, hi = first["agreement"]["ci95"]
    assert lo < agreement < hi <= 1.0
    assert first["unsafe_rate"]["ci95"][0] < unsafe < first["unsafe_rate"]["ci95"][1]
    assert result["frames"] == {"images": 100, "labelled": 100, "moving": 90, "stopped": 10, "unlabelled": 0,
                                "excluded": 0}
    assert first["mirror_consistency"] == {"value": 1.0, "frames": 100, "left_right_ties": 0}
    # the model changes its command 5 times over the 9.9 s between the first and the last image
    assert first["command_flips_per_s"] == round(5 / 9.9, 4)
    assert set(first["latency_ms"]) == {"read", "convert", "preprocess", "infer", "total"}
    assert result["recordings"][0]["camera_intrinsics"] == ["camera_info"]
    assert len(result["recordings"][0]["sha256"]) == 64 and result["bootstrap"]["blocks"] == 10
    assert json.loads(stdout)["agreement"] == first["agreement"]["value"]
    assert "agreement 0.889" in err
    page = report.read_text()
    thumbnails = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", page)
    assert len(thumbnails) == 20          # 10 stopped-but-forward + 10 wrong-way frames, all below the cap
    assert all(base64.b64decode(t).startswith(b"\x89PNG\r\n\x1a\n") for t in thumbnails)
    assert "drive_" + storage + " @ 8.05 s" in page      # stopped stretch: images 80-89, 8.0 s after the first


def test_the_reaction_lag_decides_the_labels(tmp_path, model, capsys):
    """With no lag, each change of scene is labelled with the driver's previous command for 3 frames."""
    bag, frames = write_drive(tmp_path / "drive", DRIVE, lag_s=0.3)
    out = tmp_path / "v.json"
    assert run([bag, "--model", model, "--json", out, "--lag", 0], capsys)[0] == 0
    result = json.loads(out.read_text())["models"][0]
    agreement, _, matrix = expected_figures(frames, shift=3)
    assert agreement < 80 / 90
    assert result["agreement"]["value"] == round(agreement, 4) and result["confusion"]["matrix"] == matrix.tolist()
    # a command older than --max-age labels nothing: the driver publishes every 0.05 s, so 0.33 s after
    # an image the latest command is 0.03 s old
    assert run([bag, "--model", model, "--json", out, "--max-age", 0.03, "--lag", 0.33], capsys)[0] == 0
    assert json.loads(out.read_text())["frames"]["unlabelled"] == 0
    code, _, err = run([bag, "--model", model, "--json", out, "--max-age", 0.02, "--lag", 0.33], capsys)
    assert code == 2 and "100 without a command within --max-age" in err


@pytest.mark.parametrize("compression", ["file", "message"])
def test_zstd_compressed_recordings(tmp_path, model, compression, capsys):
    bag, _ = write_drive(tmp_path / "zstd", DRIVE[:2], compression=compression)
    out = tmp_path / "v.json"
    assert run([bag, "--model", model, "--json", out], capsys)[0] == 0
    assert json.loads(out.read_text())["models"][0]["agreement"]["value"] == 1.0


def test_stamped_commands_sqlite_and_excluded_ranges(tmp_path, model, capsys):
    bag, _ = write_drive(tmp_path / "stamped", DRIVE, storage="sqlite3", cmd_type=TWIST_STAMPED)
    out = tmp_path / "v.json"
    # the driver's two mistakes (8.0-10.0 s after the first image) excluded: full agreement, nothing unsafe
    assert run([bag, "--model", model, "--json", out, "--exclude", "stamped@8.04:10.1"], capsys)[0] == 0
    result = json.loads(out.read_text())
    assert result["frames"]["excluded"] == 20
    assert result["models"][0]["agreement"]["value"] == 1.0 and result["models"][0]["unsafe_rate"]["value"] == 0.0
    assert run([bag, "--model", model, "--json", out, "--exclude", "other@8.04:10.1"], capsys)[0] == 0
    assert json.loads(out.read_text())["frames"]["excluded"] == 0


def test_paired_comparison_on_the_same_frames(tmp_path, model, eager, capsys):
    bag_a, _ = write_drive(tmp_path / "a", DRIVE[:3])
    bag_b, _ = write_drive(tmp_path / "b", DRIVE[3:], storage="sqlite3")
    out = tmp_path / "v.json"
    code, stdout, _ = run([bag_a, bag_b, "--model", model, "--baseline", eager, "--json", out, "--block", 1],
                          capsys)
    assert code == 0
    result = json.loads(out.read_text())
    b = result["models"][1]
    # the eager model drives into every obstacle: it agrees only where the driver went forward
    assert b["confusion"]["matrix"] == [[50, 0, 0, 0], [25, 0, 0, 0], [15, 0, 0, 0], [10, 0, 0, 0]]
    assert b["agreement"]["value"] == round(50 / 90, 4) and b["unsafe_rate"]["value"] == 0.5
    # per recording: a holds 65 moving frames (15 of them past an obstacle), b 25 (10 of them the driver's mistake)
    assert [r["agreement"] for r in result["recordings"]] == [[1.0, round(50 / 65, 4)], [0.6, 0.0]]
    comparison = result["comparison"]
    assert comparison["frames"] == 90
    assert comparison["pairs"] == {"both": 50, "only_a": 30, "only_b": 0, "neither": 10}
    difference = comparison["agreement_difference"]
    assert difference["value"] == round(80 / 90 - 50 / 90, 4)
    assert 0 < difference["ci95"][0] < difference["value"] < difference["ci95"][1]
    assert comparison["unsafe_rate_difference"]["ci95"][1] < 0
    assert json.loads(stdout)["agreement_difference"] == difference
    # --model twice is the same comparison
    assert run([bag_a, bag_b, "--model", model, "--model", eager, "--json", tmp_path / "w.json", "--block", 1],
               capsys)[0] == 0
    assert json.loads((tmp_path / "w.json").read_text())["comparison"] == comparison
    assert run([bag_a, "--model", model, "--model", eager, "--baseline", model], capsys)[0] == 2


def test_gate_exit_codes(tmp_path, model, capsys):
    bag, _ = write_drive(tmp_path / "drive", DRIVE)
    code, _, err = run([bag, "--model", model, "--min-agreement", 0.95], capsys)
    assert code == 1 and "gate failed: agreement 0.889" in err and "below --min-agreement 0.95" in err
    code, _, err = run([bag, "--model", model, "--max-unsafe", 0.05], capsys)
    assert code == 1 and "unsafe rate 0.100" in err
    assert run([bag, "--model", model, "--min-agreement", 0.85, "--max-unsafe", 0.1], capsys)[0] == 0
    assert run([bag, "--model", model, "--min-agreement", 1.5], capsys)[0] == 2
    report = tmp_path / "few.html"
    assert run([bag, "--model", model, "--report", report, "--thumbnails", 5, "--block", 100], capsys)[0] == 0
    page = report.read_text()
    assert "5 shown of 20" in page and page.count("data:image/png;base64,") == 5
    assert "fewer than 10 blocks (1): the intervals are rough" in page


def _bad(tmp_path, messages, name="bad"):
    return write_bag(tmp_path / name, messages)


def _one_line_exit_2(args, tmp_path, capsys, expected: str):
    json_out, report = tmp_path / "out.json", tmp_path / "out.html"
    code, stdout, err = run([*args, "--json", json_out, "--report", report], capsys)
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and err.startswith("sim2real validate: error: ") and expected in err, err
    assert not json_out.exists() and not report.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bad_recordings_are_one_line_and_exit_2(tmp_path, model, capsys):
    segments = DRIVE[:2]
    no_cmd = _bad(tmp_path, drive(segments, cmd=False)[0], "no_cmd")
    _one_line_exit_2([no_cmd, "--model", model], tmp_path, capsys, "has no command topic '/cmd_vel'")

    no_info = _bad(tmp_path, drive(segments, camera_info=False)[0], "no_info")
    _one_line_exit_2([no_info, "--model", model], tmp_path, capsys, "holds no CameraInfo on")
    intrinsics = "64,48,33.7,33.7,31.5,23.5"
    assert run([no_info, "--model", model, "--intrinsics", intrinsics], capsys)[0] == 0

    from helpers_bags import store

    text = store().types["std_msgs/msg/String"]
    wrong_cmd = drive(segments, cmd=False)[0] + [Message(CMD_TOPIC, "std_msgs/msg/String", 10**18, text(data="go"))]
    _one_line_exit_2([_bad(tmp_path, wrong_cmd, "wrong_cmd"), "--model", model], tmp_path, capsys,
                     "command topic '/cmd_vel' in")
    messages = drive(segments)[0]
    wrong_image = [Message(m.topic, m.msgtype, m.t_ns, m.msg) for m in messages if m.msgtype != IMAGE]
    wrong_image += [Message("/camera/depth/image_raw", "sensor_msgs/msg/CameraInfo", m.t_ns, m.msg)
                    for m in messages if m.topic == INFO_TOPIC]
    _one_line_exit_2([_bad(tmp_path, wrong_image, "wrong_image"), "--model", model], tmp_path, capsys,
                     "holds sensor_msgs/msg/CameraInfo, not sensor_msgs/msg/Image")

    messages, frames = drive(segments)
    images = [k for k, m in enumerate(messages) if m.msgtype == IMAGE]
    late = messages[images[10]]
    messages[images[10]] = Message(late.topic, late.msgtype, late.t_ns,
                                   image_msg(frames[8].stamp_ns, depth_scene("open", 48, 64)))
    backwards = _bad(tmp_path, messages, "backwards")
    _one_line_exit_2([backwards, "--model", model], tmp_path, capsys,
                     "image header stamps on '/camera/depth/image_raw' go back in time at image 10")
    assert run([backwards, "--model", model, "--image-time", "log"], capsys)[0] == 0

    # the driver's TwistStamped come from another clock, 100 s behind the camera's
    from helpers_bags import twist_msg

    messages = [Message(m.topic, m.msgtype, m.t_ns, twist_msg(m.msg.twist.linear.x, m.msg.twist.angular.z,
                                                              m.t_ns - 100 * 10**9))
                if m.msgtype == TWIST_STAMPED else m for m in drive(segments, cmd_type=TWIST_STAMPED)[0]]
    _one_line_exit_2([_bad(tmp_path, messages, "clocks"), "--model", model], tmp_path, capsys,
                     "45 without a command within --max-age, 0 stopped (in clocks, commands from -100 s to -95.15 s "
                     "and images from 0.05 s to 4.45 s after its start: are both stamped by one clock?)")

    bag, _ = write_drive(tmp_path / "fine", segments)
    _one_line_exit_2([bag, "--model", model, "--exclude", "0:1000"], tmp_path, capsys, "no frame left to validate")
    stopped, _ = write_drive(tmp_path / "stopped", [Segment("open", "stop", 20)])
    _one_line_exit_2([stopped, "--model", model], tmp_path, capsys, "20 stopped")
    _one_line_exit_2([bag, "--model", model, "--exclude", "5:1"], tmp_path, capsys,
                     "START must be ≥ 0 and before END")
    _one_line_exit_2([tmp_path / "absent", "--model", model], tmp_path, capsys, "bag not found")
    (tmp_path / "notes.txt").write_text("a file")
    code, _, err = run([bag, "--model", model, "--report", tmp_path / "notes.txt" / "r.html"], capsys)
    assert code == 2 and "cannot be written: " in err and err.count("\n") == 1
    _one_line_exit_2([bag, "--model", tmp_path / "none.onnx"], tmp_path, capsys, "model not found")


def test_flags_are_derived_from_the_settings_object(tmp_path, model, capsys):
    """Every settings field is a flag, the parsed flags give the settings back, and the result records them."""
    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "verb")
    validate_parser = verbs.choices["validate"]
    dests = {a.dest for a in validate_parser._actions} - {"help"}
    assert dests == {f.name for f in fields(ValidateSettings)}
    args = parser.parse_args(["validate", "x.mcap", "y", "--model", "m.onnx", "--lag", "0.5", "--exclude", "1:2",
                              "--exclude", "b@3:4", "--min-agreement", "0.9"])
    from sim2real.settings import from_namespace, to_dict

    settings = from_namespace(ValidateSettings, args)
    assert settings == ValidateSettings(bags=("x.mcap", "y"), model=("m.onnx",), lag_s=0.5,
                                        exclude=("1:2", "b@3:4"), min_agreement=0.9)
    bag, _ = write_drive(tmp_path / "drive", DRIVE[:2])
    out = tmp_path / "v.json"
    assert run([bag, "--model", model, "--json", out, "--lag", 0.3], capsys)[0] == 0
    recorded = json.loads(out.read_text())["settings"]
    assert recorded == {**to_dict(ValidateSettings(bags=(str(bag),), model=(str(model),), json=str(out))),
                        "no_progress": False}
    assert list(ACTIONS) == json.loads(out.read_text())["models"][0]["confusion"]["columns (model)"][:3]
    from sim2real.settings import from_dict

    assert from_dict(ValidateSettings, recorded) == ValidateSettings(bags=(str(bag),), model=(str(model),),
                                                                     json=str(out))
    with pytest.raises(ValueError, match="unknown ValidateSettings key"):
        from_dict(ValidateSettings, {**recorded, "lag": 1})


def lopsided_model(folder):
    """The tiny network with a bias toward LEFT and without the mirror wrapping: an open view gives
    LEFT, and so does its mirror image (whose mirrored command would be RIGHT)."""
    import onnx
    from helpers_models import tiny_contract, tiny_network
    from onnx import numpy_helper
    from sim2real.contracts import model_contract
    from sim2real.contracts.manifest import new_manifest, write_manifest
    from sim2real.export.equivariance import embed_contract

    spec, camera = tiny_contract()
    network = tiny_network(spec.width, spec.height)
    (bias,) = [init for init in network.graph.initializer if init.name == "b"]
    bias.CopyFrom(numpy_helper.from_array(np.array([-1.0, 0.7, 0.0], np.float32), "b"))
    contract = model_contract.build(spec, camera, "input", "logits")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "lopsided.onnx"
    onnx.save(embed_contract(network, contract), str(path))
    write_manifest(path, new_manifest("onnx-model", precision="fp32",
                                      **{block: contract[block] for block in model_contract.BLOCKS}))
    return path


def test_mirror_consistency_finds_a_model_that_is_not_mirror_equivariant(tmp_path, capsys):
    bag, _ = write_drive(tmp_path / "drive", [Segment("open", "forward", 20), Segment("obstacle_left", "right", 10)])
    out = tmp_path / "v.json"
    assert run([bag, "--model", lopsided_model(tmp_path / "m"), "--json", out], capsys)[0] == 0
    model = json.loads(out.read_text())["models"][0]
    assert model["confusion"]["matrix"][0] == [0, 20, 0, 0]          # it turns left in the open
    assert model["mirror_consistency"] == {"value": round(10 / 30, 4), "frames": 30, "left_right_ties": 0}


def test_block_intervals_are_wider_than_frames_counted_as_independent(tmp_path, model, capsys):
    """The disagreements come in two stretches of a second: blocks of 2 s see that, blocks of one
    frame (the frames as independent draws) give a far narrower interval around the same value."""
    bag, _ = write_drive(tmp_path / "drive", DRIVE)
    widths = {}
    for block in (0.1, 2.0):
        out = tmp_path / f"v{block}.json"
        assert run([bag, "--model", model, "--json", out, "--block", block], capsys)[0] == 0
        agreement = json.loads(out.read_text())["models"][0]["agreement"]
        assert agreement["value"] == round(80 / 90, 4)
        widths[block] = agreement["ci95"][1] - agreement["ci95"][0]
    assert widths[2.0] > 1.5 * widths[0.1], widths


def test_recorded_labels_follow_the_one_twist_to_class_rule():
    """validate/ingest label arrays of commands; the node's shadow mode labels one at a time: same rule."""
    from sim2real.contracts.actions import CommandThresholds, command_class
    from sim2real.recordings.labels import STOPPED, Labelling

    values = np.array([-np.inf, -1.0, -0.3, -0.2999, -0.05, 0.0, 0.0499, 0.05, 0.2999, 0.3, 1.0, np.inf, np.nan])
    linear, angular = (a.ravel() for a in np.meshgrid(values, values))
    for thresholds in (CommandThresholds(), CommandThresholds(angular_z=0.1, linear_x=0.2)):
        labelling = Labelling(thresholds.angular_z, thresholds.linear_x, lag_s=0.3, max_age_s=0.5)
        vectorised = labelling.label(linear, angular)
        for lx, az, got in zip(linear, angular, vectorised):
            want = command_class(float(lx), float(az), thresholds)
            assert got == (STOPPED if want is None else want), (lx, az)
