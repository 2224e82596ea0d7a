"""`sim2real ingest`: real rosbag2 recordings (MCAP, sqlite3) of two cameras become one dataset."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers_bags import (
    IMAGE,
    Message,
    Segment,
    drive,
    image_msg,
    write_bag,
    write_drive,
)
from helpers_models import depth_scene
from sim2real.cli import main
from sim2real.contracts.camera import CameraContract, Intrinsics
from sim2real.contracts.dataset import Dataset, image_of
from sim2real.contracts.preprocessing import (
    PreprocessSpec,
    depth_from_millimetres,
    preprocess,
)
from sim2real.recordings import ingest as ingest_module
from sim2real.recordings.bags import bag_sha256
from sim2real.recordings.ingest import bin_intrinsics

A = [Segment("open", "forward", 20), Segment("obstacle_left", "right", 10), Segment("open", "stop", 5),
     Segment("obstacle_right", "left", 10)]
# the driver turns left into the obstacle on the left for 1.0-2.0 s: excluded with b@1.0:2.0
B = [Segment("open", "forward", 10), Segment("obstacle_left", "left", 10), Segment("obstacle_right", "left", 10)]


@pytest.fixture
def bags(tmp_path):
    a, _ = write_drive(tmp_path / "a", A, storage="mcap", size=(64, 48))
    b, _ = write_drive(tmp_path / "b", B, storage="sqlite3", size=(160, 120))
    return a, b


def run(args, capsys):
    code = main(["ingest", *map(str, args), "--no-progress"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def ingest_args(bags, out):
    return [*bags, "--out", out, "--exclude", "b@1.0:2.0", "--max-width", 100, "--shard-size", 25]


def test_two_cameras_become_one_dataset_with_the_bags_in_its_lineage(tmp_path, bags, capsys):
    out = tmp_path / "data"
    code, stdout, err = run(ingest_args(bags, out), capsys)
    assert code == 0, err
    assert json.loads(stdout) == {"out": str(out), "images": 60, "per_class": {"forward": 30, "left": 20,
                                                                               "right": 10}, "shards": 3}
    dataset = Dataset(out)
    depth, labels, cameras = dataset.load()
    assert depth.shape == (60, 60, 80) and labels.tolist() == [0] * 20 + [2] * 10 + [1] * 10 + [0] * 10 + [1] * 10
    narrow = Intrinsics.from_fov(64, 48, 87.0)
    binned = bin_intrinsics(Intrinsics.from_fov(160, 120, 87.0), 2)
    assert (binned.width, binned.height) == (80, 60)
    assert np.allclose(cameras[:40], narrow.to_list()) and np.allclose(cameras[40:], binned.to_list())
    manifest = dataset.manifest
    assert manifest["inputs"]["recording a"] == bag_sha256(bags[0])
    assert manifest["inputs"]["recording b"] == bag_sha256(bags[1])
    assert [r["kept"] for r in manifest["recordings"]] == [40, 20]
    assert manifest["recordings"][0]["stopped"] == 5 and manifest["recordings"][1]["excluded"] == 10
    assert manifest["labelling"]["lag_s"] == 0.3 and manifest["camera"]["hfov_deg"] == 87.0
    assert not (out / "progress.json").exists()
    # the same scene from either camera reaches a model the same way, through the camera contract
    spec = PreprocessSpec(width=32, height=18)
    contract = dataset.camera_contract()
    for i, j in ((0, 40), (30, 50)):     # open, then an obstacle on the right, from each camera
        assert labels[i] == labels[j]
        x_a = preprocess(depth_from_millimetres(image_of(depth[i], cameras[i])), spec, contract, narrow)
        x_b = preprocess(depth_from_millimetres(image_of(depth[j], cameras[j])), spec, contract, binned)
        assert np.allclose(x_a, x_b, atol=1e-3)
    scene = depth_scene("obstacle_left", 48, 64)
    assert np.array_equal(image_of(depth[20], cameras[20]), np.rint(scene * 1000).astype(np.uint16))


def test_an_interrupted_ingest_resumes_to_the_same_bytes(tmp_path, bags, capsys, monkeypatch):
    whole = tmp_path / "whole"
    assert run(ingest_args(bags, whole), capsys)[0] == 0
    out = tmp_path / "data"
    real_write, calls = ingest_module.write_shard, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "write_shard", interrupted)
    assert run(ingest_args(bags, out), capsys)[0] == 130
    assert sorted(p.name for p in out.iterdir()) == ["progress.json", "shard-00000.npz"]
    monkeypatch.setattr(ingest_module, "write_shard", real_write)
    code, _, err = run(ingest_args(bags, out), capsys)
    assert code == 2 and "--resume" in err
    assert run([*ingest_args(bags, out), "--resume"], capsys)[0] == 0
    shards = [s["sha256"] for s in Dataset(out).manifest["shards"]]
    assert shards == [s["sha256"] for s in Dataset(whole).manifest["shards"]]
    assert run([*ingest_args(bags, out), "--resume"], capsys)[0] == 0      # finished: nothing to do
    code, _, err = run([*ingest_args(bags, out), "--resume", "--lag", "0.2"], capsys)
    assert code == 2 and "other arguments" in err


def test_bad_input_leaves_nothing_behind(tmp_path, bags, capsys):
    def refused(args, expected: str):
        out = tmp_path / "data"
        code, stdout, err = run([*args, "--out", out], capsys)
        assert code == 2 and stdout == "" and err.count("\n") == 1 and expected in err, err
        assert not out.exists()

    stopped, _ = write_drive(tmp_path / "stopped", [Segment("open", "stop", 10)])
    refused([stopped], "no frame left to ingest: stopped: 10 images, 0 excluded, 0 unlabelled, 10 stopped")
    refused([bags[0], "--exclude", "0:100"], "no frame left to ingest")
    no_info = write_bag(tmp_path / "no_info", drive(A, camera_info=False)[0])
    refused([no_info], "holds no CameraInfo")
    no_cmd = write_bag(tmp_path / "no_cmd", drive(A, cmd=False)[0])
    refused([no_cmd], "has no command topic")
    # the first bag fills a shard before the second turns out to go back in time: all of it is removed
    messages, frames = drive(A)
    images = [k for k, m in enumerate(messages) if m.msgtype == IMAGE]
    m = messages[images[30]]
    messages[images[30]] = Message(m.topic, m.msgtype, m.t_ns, image_msg(frames[2].stamp_ns,
                                                                         depth_scene("open", 48, 64)))
    backwards = write_bag(tmp_path / "backwards", messages)
    refused([bags[0], backwards, "--shard-size", 10], "go back in time at image 30")
    refused([bags[0], bags[0]], "a recording is given twice")
    copy = tmp_path / "copy"
    shutil.copytree(bags[0], copy)
    refused([bags[0], copy], "is a copy of")
    busy = tmp_path / "data"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    code, _, err = run([bags[0], "--out", busy], capsys)
    assert code == 2 and "not empty" in err and sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


def test_intrinsics_flag_replaces_camera_info(tmp_path, capsys):
    bag = write_bag(tmp_path / "no_info", drive(A, camera_info=False)[0])
    out = tmp_path / "data"
    code, _, err = run([bag, "--out", out, "--intrinsics", "64,48,33.7,33.7,31.5,23.5"], capsys)
    assert code == 0, err
    _, _, cameras = Dataset(out).load()
    assert cameras[0].tolist() == [64, 48, 33.7, 33.7, 31.5, 23.5]
    assert CameraContract.for_camera(224, 126, 87.0).hfov_deg == Dataset(out).camera_contract().hfov_deg


def test_ingest_flags_are_derived_from_its_settings_object():
    from dataclasses import fields

    from sim2real.cli import build_parser
    from sim2real.recordings.ingest import IngestSettings
    from sim2real.settings import from_namespace

    parser = build_parser()
    verbs = next(a for a in parser._actions if a.dest == "verb")
    assert {a.dest for a in verbs.choices["ingest"]._actions} - {"help"} == {f.name for f in fields(IngestSettings)}
    args = parser.parse_args(["ingest", "a", "--out", "d", "--exclude", "a@1:2", "--max-width", "320", "--resume"])
    assert from_namespace(IngestSettings, args) == IngestSettings(bags=("a",), out="d", exclude=("a@1:2",),
                                                                  max_width=320, resume=True)
