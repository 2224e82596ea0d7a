"""The trainer: the network, determinism, learning on a toy dataset, checkpoints and bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers_data import make_toy_dataset
from sim2real.contracts.actions import ACTIONS, FORWARD, LEFT, RIGHT
from sim2real.contracts.manifest import manifest_path, read_manifest, write_manifest
from sim2real.contracts.preprocessing import PreprocessSpec, depth_from_millimetres, preprocess_batch
from sim2real.train import trainer
from sim2real.train.model import build_model
from sim2real.train.trainer import TrainConfig, load_checkpoint, train

FAST = dict(batch_size=32, input_size=32, threads=1)



@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "data")


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory) -> Path:
    return train(toy, tmp_path_factory.mktemp("run"), TrainConfig(epochs=3, **FAST), progress=False)


def test_resnet18_shapes_and_seeded_init():
    model = build_model("resnet18").eval()
    assert model.conv1.in_channels == 1 and model.conv1.kernel_size == (7, 7)
    assert [len(stage) for stage in (model.layer1, model.layer2, model.layer3, model.layer4)] == [2, 2, 2, 2]
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(11.17e6, rel=0.01)
    with torch.no_grad():
        assert model(torch.rand(2, 1, 96, 96)).shape == (2, len(ACTIONS))
        assert build_model("resnet10").eval()(torch.rand(1, 1, 32, 32)).shape == (1, len(ACTIONS))
    torch.manual_seed(123)
    again = build_model("resnet18")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("vgg")


def test_mirror_swaps_left_and_right():
    x = torch.arange(4.0).reshape(1, 1, 1, 4).repeat(3, 1, 1, 1)
    y = torch.tensor([FORWARD, LEFT, RIGHT])
    flipped, labels = trainer.mirror(x, y, torch.tensor([True, True, False]))
    assert labels.tolist() == [FORWARD, RIGHT, RIGHT]
    assert flipped[0, 0, 0].tolist() == [3, 2, 1, 0] and flipped[2, 0, 0].tolist() == [0, 1, 2, 3]


def test_preprocessing_is_the_contract_in_chunks(monkeypatch):
    depth_mm = np.random.default_rng(1).integers(0, 6000, (7, 40, 50)).astype(np.uint16)
    spec = PreprocessSpec(size=16)
    monkeypatch.setattr(trainer, "_CHUNK", 3)
    expected = preprocess_batch(depth_from_millimetres(depth_mm), spec)
    assert np.array_equal(trainer.preprocess_millimetres(depth_mm, spec), expected)


def test_training_learns_and_writes_everything(trained):
    out = trained.parent
    manifest = read_manifest(trained)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_accuracy"] >= 0.8, metrics
    assert manifest["metrics"]["val_accuracy"] == metrics["val_accuracy"]
    assert np.array(metrics["confusion_matrix"]).sum() == metrics["val_images"] == 24
    assert set(metrics["per_class_accuracy"]) == set(ACTIONS)
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert manifest["preprocessing"] == PreprocessSpec(size=32, min_range_m=0.1, max_range_m=5.0).to_dict()
    assert manifest["actions"]["actions"] == list(ACTIONS)
    assert manifest["inputs"]["scenario"] == "x" * 64 and len(manifest["inputs"]["dataset"]) == 64
    assert manifest["train_config"]["epochs"] == 3 and manifest["arch"] == "resnet18"
    assert not list(out.glob(".*.tmp"))


def test_checkpoint_is_weights_only(trained):
    payload = torch.load(trained, weights_only=True)
    assert payload["meta"] == {"arch": "resnet18", "input_size": 32, "num_classes": 3, "epoch": 3, "seed": 0}
    model, manifest = load_checkpoint(trained)
    assert not model.training and manifest["kind"] == "checkpoint"
    with torch.no_grad():
        assert model(torch.rand(1, 1, 32, 32)).shape == (1, 3)


def test_training_is_deterministic(toy, tmp_path):
    config = TrainConfig(epochs=1, **FAST)
    first = torch.load(train(toy, tmp_path / "a", config, progress=False), weights_only=True)["state_dict"]
    second = torch.load(train(toy, tmp_path / "b", config, progress=False), weights_only=True)["state_dict"]
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_truncated_or_corrupt_checkpoint_is_refused(trained, tmp_path):
    copy = tmp_path / "checkpoint.pt"
    shutil.copy(trained, copy)
    shutil.copy(manifest_path(trained), manifest_path(copy))
    copy.write_bytes(copy.read_bytes()[:1000])
    with pytest.raises(ValueError, match="checkpoint.pt does not match its manifest"):
        load_checkpoint(copy)
    write_manifest(copy, read_manifest(trained, verify=False))
    with pytest.raises(ValueError, match="checkpoint.pt is not a readable checkpoint"):
        load_checkpoint(copy)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
    manifest_path(copy).unlink()
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        load_checkpoint(copy)


@pytest.mark.parametrize("change, message", [
    ({"epochs": 0}, "epochs must be"),
    ({"batch_size": 1}, "batch_size must be"),
    ({"lr": -1.0}, "lr must be"),
    ({"val_fraction": 0.0}, "val_fraction must be"),
    ({"input_size": 8}, "input_size must be"),
    ({"arch": "vgg"}, "unknown arch"),
    ({"threads": 0}, "threads must be"),
])
def test_bad_config_is_one_line_value_error(toy, tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        train(toy, tmp_path, TrainConfig(**{**FAST, **change}), progress=False)
    assert not any(tmp_path.iterdir())


def test_missing_or_unfinished_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset not found"):
        train(tmp_path / "nope", tmp_path / "out", TrainConfig(**FAST), progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="not a finished dataset"):
        train(tmp_path / "empty", tmp_path / "out", TrainConfig(**FAST), progress=False)


def test_a_run_of_one_step_trains(toy, tmp_path):
    checkpoint = train(toy, tmp_path / "one", TrainConfig(epochs=1, batch_size=512, input_size=32), progress=False)
    assert checkpoint.exists()
