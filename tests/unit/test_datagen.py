"""Dataset generation on the tiny scenario: reproducibility, manifest, reader, and bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("mujoco")

from sim2real.contracts.actions import ACTIONS, FORWARD  # noqa: E402
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
    assert manifest["camera"] == {"width": 64, "height": 64, "min_range_m": 0.1, "max_range_m": 5.0}
    assert manifest["generator"]["backend"] == "mujoco" and "mujoco_version" in manifest["generator"]
    assert sorted(p.name for p in out.iterdir()) == ["contact_sheet.png", MANIFEST] + [
        s["file"] for s in manifest["shards"]]


def test_reader_loads_what_was_written(dataset):
    out, manifest = dataset
    depth, labels = Dataset(out).load()
    assert depth.shape == (NUM, 64, 64) and depth.dtype == np.uint16
    counts = np.bincount(labels, minlength=len(ACTIONS))
    assert dict(zip(ACTIONS, counts.tolist())) == manifest["per_class"]
    assert 0 < (depth == 0).mean() < 0.9


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


def test_failure_leaves_no_partial_dataset(tmp_path, monkeypatch):
    calls = []

    def failing_expert(*args):
        calls.append(1)
        if len(calls) > 30:
            raise RuntimeError("boom")
        return expert_action(*args)

    monkeypatch.setattr(generate_module, "expert_action", failing_expert)
    with pytest.raises(RuntimeError, match="boom"):
        make(tmp_path / "data")
    assert not (tmp_path / "data").exists()


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
