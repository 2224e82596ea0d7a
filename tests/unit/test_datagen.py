"""Dataset generation on the tiny scenario: reproducibility, manifest, reader, and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

pytest.importorskip("mujoco")

from sim2real.contracts.actions import ACTIONS, FORWARD  # noqa: E402
from sim2real.contracts.camera import Intrinsics  # noqa: E402
from sim2real.contracts.dataset import MANIFEST, Dataset, DatasetError  # noqa: E402
from sim2real.contracts.scenario import ScenarioError, load_scenario  # noqa: E402
from sim2real.datagen import generate as generate_module  # noqa: E402
from sim2real.datagen.generate import generate  # noqa: E402
from sim2real.sim.expert import expert_action  # noqa: E402
from sim2real.sim.world import sample_world  # noqa: E402

NUM, SHARD = 60, 25


def make(out, seed=3, workers=1, num=NUM):
    return generate("tiny", num=num, out=out, seed=seed, workers=workers, shard_size=SHARD, progress=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("datagen") / "data"
    return out, make(out)


def shas(manifest):
    return [s["sha256"] for s in manifest["shards"]]


def test_manifest_describes_the_shards(dataset):
    out, manifest = dataset
    assert manifest["kind"] == "dataset" and manifest["count"] == NUM
    assert [s["count"] for s in manifest["shards"]] == [25, 25, 10]
    assert set(manifest["per_class"]) == set(ACTIONS) and sum(manifest["per_class"].values()) == NUM
    assert manifest["scenario_name"] == "tiny" and manifest["scenario_sha256"] == load_scenario("tiny").sha256()
    assert manifest["camera"] == {"name": "", "width": 64, "height": 64, "hfov_deg": 87.0, "min_range_m": 0.1,
                                  "max_range_m": 5.0, "randomized": {"hfov_deg": None, "aspect": None}}
    assert manifest["generator"]["backend"] == "mujoco" and "mujoco_version" in manifest["generator"]
    assert sorted(p.name for p in out.iterdir()) == ["contact_sheet.png", MANIFEST] + [
        s["file"] for s in manifest["shards"]]


def test_reader_loads_what_was_written(dataset):
    out, manifest = dataset
    depth, labels, cameras = Dataset(out).load()
    assert depth.shape == (NUM, 64, 64) and depth.dtype == np.uint16
    np.testing.assert_array_equal(cameras, np.tile(Intrinsics.from_fov(64, 64, 87.0).to_list(), (NUM, 1)))
    counts = np.bincount(labels, minlength=len(ACTIONS))
    assert dict(zip(ACTIONS, counts.tolist())) == manifest["per_class"]
    assert 0 < (depth == 0).mean() < 0.9


def test_each_image_is_stored_with_the_camera_that_took_it(tmp_path):
    """Datagen draws cameras of other fields of view and aspects; every image keeps its intrinsics,
    and its pixels beyond its own size are padding (0, never read)."""
    spec = load_scenario("tiny").model_dump(mode="json")
    spec["randomization"] = {"camera_hfov_deg": [55.0, 90.0], "camera_aspect": [1.333, 1.778]}
    spec["camera"].update(width=64, height=36)
    path = tmp_path / "drawn.yaml"
    path.write_text(yaml.safe_dump(spec))
    generate(path, num=12, out=tmp_path / "data", seed=0, shard_size=12, progress=False)
    depth, _, cameras = Dataset(tmp_path / "data").load()
    widths, heights = cameras[:, 0].astype(int), cameras[:, 1].astype(int)
    assert depth.shape == (12, 36, 64) and len(set(widths.tolist())) > 2 and (heights == 36).all()
    for image, camera in zip(depth, cameras):
        width, height = int(camera[0]), int(camera[1])
        hfov = Intrinsics(width, height, *camera[2:]).fov_deg()[0]
        assert 55.0 - 1e-6 <= hfov <= 90.0 + 1e-6 and 1.3 < width / height < 1.8
        assert (image[:, width:] == 0).all()
    assert (depth > 0).mean() > 0.2


def test_an_older_dataset_says_to_regenerate(dataset, tmp_path):
    out, _ = dataset
    copy = tmp_path / "old"
    shutil.copytree(out, copy)
    manifest = json.loads((copy / MANIFEST).read_text())
    (copy / MANIFEST).write_text(json.dumps({**manifest, "format_version": 1}))
    with pytest.raises(DatasetError, match="dataset format 1 .*regenerate it with sim2real datagen"):
        Dataset(copy)


def test_same_seed_is_byte_identical_with_any_worker_count(dataset, tmp_path):
    _, manifest = dataset
    again = make(tmp_path / "two_workers", workers=2)
    assert shas(again) == shas(manifest)
    assert shas(make(tmp_path / "other_seed", seed=4)) != shas(manifest)


def test_truncated_shard_is_refused(dataset, tmp_path):
    out, manifest = dataset
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shard = copy / manifest["shards"][1]["file"]
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="corrupt or truncated"):
        Dataset(copy).load()


def test_refuses_a_finished_dataset(dataset):
    out, _ = dataset
    with pytest.raises(ValueError, match="already holds a finished dataset"):
        make(out)


def test_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match=f"{tmp_path}.*not empty"):
        make(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("kwargs, message", [
    ({"num": 0}, "num must be"),
    ({"workers": 0}, "workers must be"),
    ({"seed": -1}, "seed must be"),
])
def test_bad_counts_are_refused(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate("tiny", **{"num": 5, "out": tmp_path / "data", "progress": False, **kwargs})
    assert not (tmp_path / "data").exists()


def test_unknown_scenario_and_backend_are_refused(tmp_path):
    with pytest.raises(ScenarioError):
        generate("no-such-scenario", num=5, out=tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match="unknown simulator backend"):
        generate("tiny", num=5, out=tmp_path / "b", backend="nope", progress=False)


def fail_after(monkeypatch, calls_allowed):
    """Make the expert raise after ``calls_allowed`` calls (an interruption mid-run)."""
    calls = []

    def failing_expert(*args):
        calls.append(1)
        if len(calls) > calls_allowed:
            raise RuntimeError("boom")
        return expert_action(*args)

    monkeypatch.setattr(generate_module, "expert_action", failing_expert)


def test_failure_before_any_shard_leaves_nothing(tmp_path, monkeypatch):
    fail_after(monkeypatch, 10)
    with pytest.raises(RuntimeError, match="boom"):
        make(tmp_path / "data")
    assert not (tmp_path / "data").exists()


def test_interrupted_run_keeps_finished_shards_and_resumes_byte_identical(dataset, tmp_path, monkeypatch):
    _, reference = dataset
    out = tmp_path / "data"
    fail_after(monkeypatch, 30)                       # shard 0 (25 images) finishes, shard 1 does not
    with pytest.raises(RuntimeError, match="boom"):
        make(out)
    assert sorted(p.name for p in out.iterdir()) == [generate_module.PROGRESS, "shard-00000.npz"]
    with pytest.raises(DatasetError, match="not a finished dataset"):
        Dataset(out)
    with pytest.raises(ValueError, match="--resume"):
        make(out)                                     # without --resume the folder is refused
    monkeypatch.setattr(generate_module, "expert_action", expert_action)
    resumed = generate("tiny", num=NUM, out=out, seed=3, shard_size=SHARD, progress=False, resume=True)
    assert shas(resumed) == shas(reference)
    assert resumed["per_class"] == reference["per_class"]
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in dataset[0].iterdir())
    assert Dataset(out).load()[0].shape == (NUM, 64, 64)


def test_resume_redoes_a_truncated_shard_and_ignores_leftovers(dataset, tmp_path, monkeypatch):
    """As after a kill: a recorded shard damaged, a temp file left behind; nothing that looks complete is kept."""
    _, reference = dataset
    out = tmp_path / "data"
    fail_after(monkeypatch, 55)                       # shards 0 and 1 finish
    with pytest.raises(RuntimeError, match="boom"):
        make(out)
    monkeypatch.setattr(generate_module, "expert_action", expert_action)
    shard = out / "shard-00001.npz"
    shard.write_bytes(shard.read_bytes()[:-100])
    (out / ".shard-00002.npz.abc.tmp").write_bytes(b"partial")
    rendered = []
    original = generate_module._render_shard
    monkeypatch.setattr(generate_module, "_render_shard",
                        lambda job, report: rendered.append(job.index) or original(job, report))
    resumed = generate("tiny", num=NUM, out=out, seed=3, shard_size=SHARD, progress=False, resume=True)
    assert rendered == [1, 2], "shard 0 verified and kept; the truncated one and the missing one rendered"
    assert shas(resumed) == shas(reference)
    assert not list(out.glob(".*.tmp"))


def test_resume_refuses_other_arguments_and_returns_a_finished_dataset(dataset, tmp_path, monkeypatch):
    out, reference = dataset
    same = generate("tiny", num=NUM, out=out, seed=3, shard_size=SHARD, progress=False, resume=True)
    assert same == reference
    with pytest.raises(ValueError, match="other arguments"):
        generate("tiny", num=NUM, out=out, seed=4, shard_size=SHARD, progress=False, resume=True)
    fail_after(monkeypatch, 30)
    with pytest.raises(RuntimeError):
        make(tmp_path / "data")
    monkeypatch.setattr(generate_module, "expert_action", expert_action)
    with pytest.raises(ValueError, match="seed=3.*this one 5"):
        generate("tiny", num=NUM, out=tmp_path / "data", seed=5, shard_size=SHARD, progress=False, resume=True)


def test_resume_into_a_new_folder_is_a_normal_run(tmp_path, dataset):
    manifest = generate("tiny", num=NUM, out=tmp_path / "new", seed=3, shard_size=SHARD, progress=False, resume=True)
    assert shas(manifest) == shas(dataset[1])


def test_class_balance_is_exact(tmp_path):
    manifest = generate("tiny", num=50, out=tmp_path / "data", seed=1, shard_size=20, progress=False, balance=0.4)
    counts = [[s["per_class"][name] for name in ACTIONS] for s in manifest["shards"]]
    assert counts == [[8, 6, 6], [8, 6, 6], [4, 3, 3]]
    assert manifest["per_class"] == {"forward": 20, "left": 15, "right": 15}
    assert manifest["class_balance"]["forward_fraction_target"] == 0.4
    _, labels, _ = Dataset(tmp_path / "data").load()
    assert np.bincount(labels, minlength=3).tolist() == [20, 15, 15]
    with pytest.raises(ValueError, match="balance"):
        generate("tiny", num=5, out=tmp_path / "bad", balance=1.5, progress=False)


def test_default_scenario_sets_a_balance_and_none_keeps_the_natural_mix(tmp_path):
    assert load_scenario("default").datagen.forward_fraction == 0.5
    natural = generate("tiny", num=20, out=tmp_path / "n", seed=2, progress=False, balance=None)
    assert natural["class_balance"]["forward_fraction_target"] is None


def test_cli_datagen_flags(tmp_path, capsys):
    from sim2real.cli import main

    out = tmp_path / "cli"
    assert main(["datagen", "--scenario", "tiny", "--num", "12", "--out", str(out), "--seed", "1",
                 "--shard-size", "5", "--balance", "0.5", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert '"shards": 3' in printed and '"per_class": {"forward": 6, "left": 3, "right": 3}' in printed
    assert main(["datagen", "--scenario", "tiny", "--num", "12", "--out", str(out), "--seed", "1",
                 "--shard-size", "5", "--balance", "0.5", "--no-progress", "--resume"]) == 0
    assert main(["datagen", "--scenario", "tiny", "--num", "5", "--out", str(tmp_path / "x"),
                 "--balance", "lots"]) == 2
    assert "--balance must be" in capsys.readouterr().err
    assert main(["datagen", "--scenario", "tiny", "--num", "5"]) == 2


def test_sensor_grid_png(tmp_path):
    from sim2real.datagen.sensor_grid import panels, write_sensor_grid

    titles = [title.split("\n")[0] for title, _ in panels(load_scenario("default"))]
    assert titles == ["ideal", "stereo noise", "edge holes", "stereo shadows", "quantisation", "min range / reach",
                      "dropout", "all together"]
    path = write_sensor_grid("tiny", tmp_path / "grid.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pose_mix_keeps_every_class_well_represented():
    scenario = load_scenario("default")
    rng = np.random.default_rng(0)
    radius, rule = scenario.robot.radius_m, scenario.episode.expert
    labels = []
    for _ in range(8):
        world = sample_world(scenario, rng)
        labels += [expert_action(world, generate_module.sample_pose(world, radius, rng), radius, rule)
                   for _ in range(25)]
    fractions = np.bincount(labels, minlength=len(ACTIONS)) / len(labels)
    assert 0.35 < fractions[FORWARD] < 0.65
    assert fractions.min() > 0.15
