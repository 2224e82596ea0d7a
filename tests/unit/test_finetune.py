"""Fine-tuning and co-training: starting from a checkpoint, batches mixed from named datasets in a
chosen share, frozen parts, lineage naming every dataset, INT8 calibration drawing on all of them;
and early stopping on the validation loss."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_data import make_toy_dataset
from sim2real.cli import main
from sim2real.contracts.manifest import read_manifest, sha256_file
from sim2real.export import exporter
from sim2real.train import loop
from sim2real.train.data import batch_counts, mixed_order, parse_sources
from sim2real.train.schedule import Stopper
from sim2real.train.trainer import TrainConfig, train

FAST = dict(batch_size=32, input_size=32, threads=1, tensorboard=False, arch="resnet10")
FROZEN = ("conv1.", "bn1.", "layer1.")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("data")
    # "real" has another resolution: every image goes through the camera contract with its own intrinsics.
    return {"sim": make_toy_dataset(root / "sim", count=160), "real": make_toy_dataset(root / "real", count=60,
                                                                                        size=48, seed=3)}


@pytest.fixture(scope="module")
def base(data, tmp_path_factory) -> Path:
    return train(data["sim"], tmp_path_factory.mktemp("base"), TrainConfig(epochs=1, **FAST), progress=False)


@pytest.fixture(scope="module")
def tuned(data, base, tmp_path_factory) -> dict:
    """Fine-tuned from ``base`` on sim and real, a quarter of every batch real, stem and layer1 frozen."""
    batches = []
    original = loop.Run._order

    def recording(self, epoch, steps):
        order, flips = original(self, epoch, steps)
        batches.extend(self.train_src[order].reshape(steps, -1))
        return order, flips

    patch = pytest.MonkeyPatch()
    patch.setattr(loop.Run, "_order", recording)
    try:
        checkpoint = train({"sim": data["sim"], "real": data["real"]}, tmp_path_factory.mktemp("tuned"),
                           TrainConfig(epochs=2, lr=5e-4, init=str(base.parent), freeze=("stem", "layer1"),
                                       mix={"real": 0.25}, **FAST), progress=False)
    finally:
        patch.undo()
    return {"checkpoint": checkpoint, "batches": np.array(batches)}


def test_every_batch_has_the_chosen_share_of_real_images(tuned):
    batches = tuned["batches"]
    assert batches.shape == (2 * (144 + 54) // 32, 32)
    assert all(np.bincount(batch, minlength=2).tolist() == [24, 8] for batch in batches), "sim 24, real 8 per batch"
    metrics = json.loads((tuned["checkpoint"].parent / "metrics.json").read_text())
    assert metrics["batch_mix"] == [{"datasets": ["real"], "images": 8}, {"datasets": ["sim"], "images": 24}]
    assert set(metrics["val_accuracy_by_dataset"]) == {"sim", "real"}


def test_frozen_parts_keep_the_starting_weights_and_the_rest_learns(base, tuned):
    before = torch.load(base, weights_only=True)["state_dict"]
    after = torch.load(tuned["checkpoint"], weights_only=True)["state_dict"]
    frozen = [name for name in before if name.startswith(FROZEN)]
    assert frozen and all(torch.equal(before[name], after[name]) for name in frozen), "weights and BN statistics"
    learned = [name for name in before if name.startswith("layer2.") and name.endswith("weight")]
    assert any(not torch.equal(before[name], after[name]) for name in learned)


def test_lineage_names_the_start_and_every_dataset(data, base, tuned):
    manifest = read_manifest(tuned["checkpoint"])
    start = read_manifest(base)
    sim, real = (sha256_file(data[name] / "manifest.json") for name in ("sim", "real"))
    datasets = [entry for entry in manifest["lineage"] if entry["kind"] == "dataset"]
    assert [(d.get("name"), d["sha256"]) for d in datasets] == [(None, sim), ("sim", sim), ("real", real)]
    assert {"kind": "checkpoint", "file": "checkpoint.pt", "sha256": start["sha256"], "role": "init"} \
        in manifest["lineage"]
    assert [d["share"] for d in manifest["datasets"]] == [0.75, 0.25]
    assert manifest["inputs"]["init"] == start["sha256"] == manifest["init"]["sha256"]
    assert manifest["inputs"]["dataset.real"] == manifest["datasets"][1]["sha256"] == real
    assert manifest["inputs"]["dataset"] == sim


def test_export_calibrates_on_every_dataset_behind_the_model(tuned):
    manifest = read_manifest(tuned["checkpoint"])
    spec, camera = exporter.contract_of(manifest, tuned["checkpoint"])
    held_x, held_y, calib_x, provenance = exporter._samples(manifest, None, spec, camera)
    shas = [entry["sha256"] for entry in manifest["datasets"]]
    assert [entry["sha256"] for entry in provenance["datasets"]] == shas
    counts = [entry["calibration_images"] for entry in provenance["datasets"]]
    assert counts == [144, 54], "256 wanted, 3:1 by batch share, capped by each training split"
    assert len(calib_x) == sum(counts) == provenance["calibration_images"]
    assert [entry["held_out"] for entry in provenance["datasets"]] == ["validation split"] * 2
    assert len(held_y) == 16 + 6 and held_x.shape[1:] == calib_x.shape[1:] == (2, 32, 32)


def test_mix_draws_whole_images_per_batch_from_endless_seeded_streams():
    groups = batch_counts([100, 10, 30], ["sim", "real", "lab"], {"real": 0.3}, 64)
    assert groups == [([1], 19), ([0, 2], 45)]
    order = mixed_order(groups, [0, 100, 110], [100, 10, 30], steps=10, seed=0, epoch=1)
    source = np.searchsorted([100, 110], order, side="right").reshape(10, 64)
    assert all((row == 1).sum() == 19 for row in source)
    real = order[source.ravel() == 1]
    assert np.array_equal(np.bincount(real - 100, minlength=10), np.full(10, 19)), "whole seeded cycles"
    assert np.array_equal(order, mixed_order(groups, [0, 100, 110], [100, 10, 30], 10, 0, 1))
    assert not np.array_equal(order, mixed_order(groups, [0, 100, 110], [100, 10, 30], 10, 0, 2))
    with pytest.raises(ValueError, match="'lab', which is not a dataset"):
        batch_counts([10, 10], ["sim", "real"], {"lab": 0.5}, 8)
    with pytest.raises(ValueError, match="no image per batch"):
        batch_counts([10, 10], ["sim", "real"], {"real": 0.01}, 8)
    with pytest.raises(ValueError, match="must add up to 1"):
        batch_counts([10, 10], ["sim", "real"], {"sim": 0.5, "real": 0.3}, 8)
    assert parse_sources(["a=/x", "/y/b"]) == [("a", Path("/x")), ("b", Path("/y/b"))]
    with pytest.raises(ValueError, match="given twice"):
        parse_sources(["/x/d", "/y/d"])


def test_early_stopping_keeps_the_best_epoch_and_stops_on_a_plateau(data, tmp_path):
    checkpoint = train(data["sim"], tmp_path / "es", TrainConfig(epochs=30, lr=2e-2, patience=1, schedule="plateau",
                                                                 **FAST), progress=False)
    metrics = json.loads((tmp_path / "es" / "metrics.json").read_text())
    losses = [entry["val_loss"] for entry in metrics["history"]]
    early = metrics["early_stopping"]
    assert early["stopped"] is not None and metrics["epochs_run"] == early["stopped"]["epoch"] < 30
    assert early["best_epoch"] == 1 + int(np.argmin(losses))
    assert torch.load(checkpoint, weights_only=True)["meta"]["epoch"] == metrics["epochs_run"]


def test_stopper_cuts_once_then_stops():
    stopper = Stopper(patience=2, cuts_allowed=1)
    verdicts = [stopper.update(epoch, loss) for epoch, loss in enumerate([1.0, 0.5, 0.6, 0.5, 0.4, 0.45, 0.41], 1)]
    assert verdicts == ["best", "best", "wait", "cut", "best", "wait", "stop"]
    assert stopper.best_epoch == 5


def test_cli_fine_tunes_and_refuses_bad_mixes(data, base, tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(["train", "--data", f"sim={data['sim']}", "--data", f"real={data['real']}", "--mix", "real=0.5",
                 "--init", str(base), "--freeze", "stem", "--epochs", "1", "--batch-size", "32", "--threads", "1",
                 "--no-tensorboard", "--out", str(out)])
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == 0 and printed["checkpoint"] == str(out / "checkpoint.pt")
    manifest = read_manifest(out / "checkpoint.pt")
    assert [d["name"] for d in manifest["datasets"]] == ["sim", "real"] and manifest["arch"] == "resnet10"
    assert manifest["train_config"]["freeze"] == ["stem"] and manifest["train_config"]["mix"] == {"real": 0.5}
    for argv, message in ((["--mix", "lab=0.3"], "'lab', which is not a dataset"),
                          (["--mix", "real"], "--mix takes NAME=SHARE"),
                          (["--freeze", "stem"], "freeze needs init"),
                          (["--freeze", "head", "--init", str(base)], "cannot freeze 'head'"),
                          (["--init", str(base), "--arch", "resnet18"], "trained with arch 'resnet10'")):
        code = main(["train", "--data", f"sim={data['sim']}", "--data", f"real={data['real']}",
                     "--out", str(tmp_path / "bad"), "--epochs", "1", *argv])
        err = capsys.readouterr().err.strip()
        assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "bad").exists()


def test_a_run_with_early_stopping_resumes_exactly(tmp_path):
    toy = make_toy_dataset(tmp_path / "small", count=96)
    config = TrainConfig(epochs=4, patience=2, schedule="plateau", **FAST)
    straight = train(toy, tmp_path / "straight", config, progress=False)
    state = train(toy, tmp_path / "cut", config, progress=False, stop_after=2)
    assert torch.load(state, weights_only=True)["train_state"]["stopper"]["best_epoch"] >= 1
    resumed = train(toy, tmp_path / "cut", config, progress=False, resume=state)
    first, second = (torch.load(path, weights_only=True)["state_dict"] for path in (straight, resumed))
    assert all(torch.equal(first[name], second[name]) for name in first)
    histories = [json.loads((path.parent / "metrics.json").read_text()) for path in (straight, resumed)]
    assert histories[0]["history"] == histories[1]["history"]
    assert histories[0]["early_stopping"] == histories[1]["early_stopping"]
