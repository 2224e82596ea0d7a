"""The trainer: the network, augmentation, determinism, learning on a toy dataset, checkpoints,
exact resume and bad input."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_data import make_toy_dataset
from sim2real.contracts.actions import ACTIONS, FORWARD, LEFT, RIGHT
from sim2real.contracts.manifest import manifest_path, read_manifest, write_manifest
from sim2real.contracts.camera import CameraContract, Intrinsics
from sim2real.contracts.preprocessing import PreprocessSpec, depth_from_millimetres, preprocess_batch
from sim2real.train import loop, metrics, trainer
from sim2real.train.augment import SensorAugment, augment_millimetres, corrupt
from sim2real.train.model import build_model
from sim2real.train.trainer import TrainConfig, load_checkpoint, read_training_state, train

FAST = dict(batch_size=32, input_size=32, threads=1, tensorboard=False)


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "data")


@pytest.fixture(scope="module")
def trained(toy, tmp_path_factory) -> Path:
    return train(toy, tmp_path_factory.mktemp("run"), TrainConfig(epochs=3, **{**FAST, "tensorboard": True}),
                 progress=False)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory) -> dict[str, Path]:
    """A 4-epoch resnet10 run straight through, and the same run stopped after epoch 2 and resumed."""
    toy = make_toy_dataset(tmp_path_factory.mktemp("small") / "data", count=96)
    config = TrainConfig(epochs=4, arch="resnet10", **FAST)
    straight = train(toy, tmp_path_factory.mktemp("straight"), config, progress=False)
    folder = tmp_path_factory.mktemp("interrupted")
    state = train(toy, folder, config, progress=False, stop_after=2)
    kept = tmp_path_factory.mktemp("kept") / "last.pt"
    shutil.copy(state, kept)
    shutil.copy(manifest_path(state), manifest_path(kept))
    listing = sorted(p.name for p in folder.iterdir())
    finished = train(toy, folder, config, progress=False, resume=folder)
    return {"straight": straight, "state": kept, "resumed": finished, "listing_after_stop": listing}


def test_resnet18_shapes_and_seeded_init():
    model = build_model("resnet18").eval()
    assert model.conv1.in_channels == 2 and model.conv1.kernel_size == (7, 7), "depth and validity"
    assert [len(stage) for stage in (model.layer1, model.layer2, model.layer3, model.layer4)] == [2, 2, 2, 2]
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(11.18e6, rel=0.01)
    with torch.no_grad():
        assert model(torch.rand(2, 2, 72, 128)).shape == (2, len(ACTIONS))
        assert build_model("resnet10").eval()(torch.rand(1, 2, 32, 32)).shape == (1, len(ACTIONS))
        assert build_model("resnet10", in_channels=1).eval()(torch.rand(1, 1, 32, 32)).shape == (1, len(ACTIONS))
    torch.manual_seed(123)
    again = build_model("resnet18")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("vgg")


def test_mirror_swaps_left_and_right():
    x = torch.arange(4.0).reshape(1, 1, 1, 4).repeat(3, 1, 1, 1)
    y = torch.tensor([FORWARD, LEFT, RIGHT])
    flipped, labels = loop.mirror(x, y, torch.tensor([True, True, False]))
    assert labels.tolist() == [FORWARD, RIGHT, RIGHT]
    assert flipped[0, 0, 0].tolist() == [3, 2, 1, 0] and flipped[2, 0, 0].tolist() == [0, 1, 2, 3]


def test_preprocessing_is_the_contract_with_each_images_camera():
    depth_mm = np.random.default_rng(1).integers(0, 6000, (7, 40, 50)).astype(np.uint16)
    spec, camera = PreprocessSpec(width=32, height=18), CameraContract.for_camera(64, 36, 87.0)
    cameras = [Intrinsics.from_fov(50 - i, 40 - 2 * i, 60.0 + 4 * i) for i in range(7)]
    rows = np.array([c.to_list() for c in cameras])
    expected = preprocess_batch([depth_from_millimetres(d[:c.height, :c.width]) for d, c in zip(depth_mm, cameras)],
                                spec, camera, cameras)
    assert np.array_equal(trainer.preprocess_millimetres(depth_mm, rows, spec, camera), expected)
    assert expected.shape == (7, 2, 18, 32) and len({float(x[1].mean()) for x in expected}) == 7


def test_training_learns_and_writes_everything(trained):
    out = trained.parent
    manifest = read_manifest(trained)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_accuracy"] >= 0.8, metrics
    assert manifest["metrics"]["val_accuracy"] == metrics["val_accuracy"]
    assert np.array(metrics["confusion_matrix"]).sum() == metrics["val_images"] == 24
    assert set(metrics["per_class_accuracy"]) == set(ACTIONS)
    assert (out / "confusion_matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert manifest["preprocessing"] == PreprocessSpec(width=32, height=32, min_range_m=0.1, max_range_m=5.0).to_dict()
    assert manifest["camera"] == CameraContract.for_camera(64, 64, 87.0, "toy").to_dict()
    assert manifest["actions"]["actions"] == list(ACTIONS)
    assert manifest["inputs"]["scenario"] == "x" * 64 and len(manifest["inputs"]["dataset"]) == 64
    assert manifest["train_config"]["epochs"] == 3 and manifest["arch"] == "resnet18"
    assert manifest["lineage"] == [{"kind": "dataset", "sha256": manifest["inputs"]["dataset"],
                                    "path": manifest["dataset_path"]}]
    assert manifest["augmentation"]["probability"] == 0.5 and manifest["augmentation"]["holes"] == 3
    assert manifest["training"] == metrics["training"]
    assert metrics["training"]["device"] == "cpu" and metrics["training"]["amp"] is False
    assert metrics["training"]["world_size"] == 1 and metrics["training"]["resumed_from"] is None
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    assert not list(out.glob(".*.tmp")) and not (out / "last.pt").exists()
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))


def test_checkpoint_is_weights_only(trained):
    payload = torch.load(trained, weights_only=True)
    assert payload["meta"] == {"arch": "resnet18", "input_size": 32, "num_classes": 3, "in_channels": 2, "epoch": 3,
                               "seed": 0}
    model, manifest = load_checkpoint(trained)
    assert not model.training and manifest["kind"] == "checkpoint"
    with torch.no_grad():
        assert model(torch.rand(1, 2, 32, 32)).shape == (1, 3)


def test_training_is_deterministic(toy, tmp_path):
    config = TrainConfig(epochs=1, arch="resnet10", **FAST)
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
    ({"seed": -1}, "seed must be"),
    ({"augment": 1.5}, "augment probability must be"),
    ({"dropout": 1.0}, "dropout must be"),
    ({"holes": -1}, "holes must be"),
    ({"device": "tpu"}, "device must be"),
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
    checkpoint = train(toy, tmp_path / "one", TrainConfig(epochs=1, batch_size=512, input_size=32, threads=1,
                                                          arch="resnet10", tensorboard=False), progress=False)
    assert checkpoint.exists()


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(resumed):
    assert resumed["listing_after_stop"] == ["last.pt", "last.pt.manifest.json"]
    straight = torch.load(resumed["straight"], weights_only=True)["state_dict"]
    again = torch.load(resumed["resumed"], weights_only=True)["state_dict"]
    assert straight.keys() == again.keys()
    assert all(torch.equal(straight[name], again[name]) for name in straight)
    first = json.loads((resumed["straight"].parent / "metrics.json").read_text())
    second = json.loads((resumed["resumed"].parent / "metrics.json").read_text())
    assert first["history"] == second["history"] and len(second["history"]) == 4
    assert second["training"]["resumed_from"]["epoch"] == 2
    assert not (resumed["resumed"].parent / "last.pt").exists()


def test_training_state_is_weights_only_and_complete(resumed):
    payload = torch.load(resumed["state"], weights_only=True)
    state = payload["train_state"]
    assert state["epoch"] == payload["meta"]["epoch"] == 2
    assert {"optimizer", "scheduler", "rng", "history", "global_step"} <= set(state)
    assert state["optimizer"]["state"] and isinstance(state["rng"]["torch"], torch.Tensor)
    assert read_manifest(resumed["state"])["kind"] == "training-state"
    assert trainer.stored_config(resumed["state"]) == TrainConfig(epochs=4, arch="resnet10", **FAST)


def test_resume_refuses_other_settings_and_other_files(resumed, tmp_path):
    toy = Path(read_manifest(resumed["straight"])["dataset_path"])
    config = TrainConfig(epochs=4, arch="resnet10", **FAST)
    with pytest.raises(ValueError, match=r"made with other settings \(lr 0.002 → 0.001\)"):
        train(toy, tmp_path / "a", TrainConfig(**{**vars(config), "lr": 1e-3}), progress=False, resume=resumed["state"])
    with pytest.raises(ValueError, match="checkpoint, not a training state"):
        train(toy, tmp_path / "b", config, progress=False, resume=resumed["straight"])
    with pytest.raises(FileNotFoundError, match="training state not found"):
        train(toy, tmp_path / "c", config, progress=False, resume=tmp_path)
    with pytest.raises(ValueError, match="already trained 2 epochs"):
        train(toy, tmp_path / "d", config, progress=False, resume=resumed["state"], stop_after=2)
    broken = tmp_path / "last.pt"
    broken.write_bytes(resumed["state"].read_bytes()[:4096])
    write_manifest(broken, read_manifest(resumed["state"], verify=False))
    with pytest.raises(ValueError, match="last.pt is not a readable training state"):
        read_training_state(broken)
    assert not any((tmp_path / name).exists() for name in "abcd")


def test_sensor_augmentation_follows_the_camera_model():
    spec = PreprocessSpec(width=16, height=16, min_range_m=0.1, max_range_m=5.0)
    camera = CameraContract.for_camera(64, 64, 87.0)
    flat = np.full((64, 64), 1.0, np.float32)
    far = np.full((64, 64), 4.0, np.float32)
    noisy = SensorAugment(probability=1.0, sigma_per_m2=0.02, dropout=0.0, holes=0)
    near_sd = np.nanstd(np.stack([corrupt(flat, noisy, spec, np.random.default_rng(i)) for i in range(8)]))
    far_sd = np.nanstd(np.stack([corrupt(far, noisy, spec, np.random.default_rng(i)) for i in range(8)]))
    assert 8 < far_sd / near_sd < 32  # std grows with z², the strength is drawn from [0, max] per image
    holes = SensorAugment(probability=1.0, sigma_per_m2=0.0, dropout=0.2, holes=5)
    out = corrupt(flat, holes, spec, np.random.default_rng(3))
    assert 0.0 < np.isnan(out).mean() < 0.6 and np.all(out[~np.isnan(out)] == 1.0)
    again = corrupt(flat, holes, spec, np.random.default_rng(3))
    assert np.array_equal(np.isnan(out), np.isnan(again))
    step = np.full((64, 64), 3.0, np.float32)
    step[:, 40:] = 0.8  # a near object: the columns either side of its edge are the only edge pixels
    edges_only = SensorAugment(probability=1.0, sigma_per_m2=0.0, dropout=0.0, holes=0, edge_holes=1.0)
    lost = np.isnan(corrupt(step, edges_only, spec, np.random.default_rng(5)))
    assert lost.any() and not lost[:, :39].any() and not lost[:, 41:].any()

    beyond = corrupt(np.full((64, 64), 7.0, np.float32), noisy, spec, np.random.default_rng(1))
    assert np.isfinite(beyond).all(), "a reading pushed beyond the max range stays a reading (too far)"
    close = corrupt(np.full((64, 64), 0.05, np.float32), noisy, spec, np.random.default_rng(1))
    assert np.isnan(close).all(), "below the min range: no return, as in the sensor model"

    mm = np.full((2, 64, 64), 2000, np.uint16)
    rows = np.tile(Intrinsics.from_fov(64, 64, 87.0).to_list(), (2, 1))
    x = augment_millimetres(mm, rows, holes, spec, camera, np.random.default_rng(0))
    clean = preprocess_batch(depth_from_millimetres(mm), spec, camera)
    assert x.shape == clean.shape == (2, 2, 16, 16) and x.dtype == np.float32
    assert np.allclose(x[:, 0][x[:, 1] > 0], clean[0, 0, 0, 0]), "holes lower the validity, never the depth"
    assert x[:, 1].mean() < clean[:, 1].mean() == 1.0

    manifest = {"scenario": {"noise": {"stereo_sigma_per_m2": 0.005, "dropout": 0.01, "edge_hole_prob": 0.3,
                                       "edge_jump_m": 0.05},
                             "randomization": {"stereo_sigma_per_m2": [0.0, 0.02], "dropout": [0.0, 0.03]}}}
    assert SensorAugment.for_dataset(manifest, 0.5, None, None, 3) == SensorAugment(0.5, 0.02, 0.03, 3, 0.3, 0.05)
    assert SensorAugment.for_dataset({}, 0.5, 0.1, None, 0) == SensorAugment(0.5, 0.1, 0.03, 0)


def test_missing_tensorboard_is_said_once_and_training_goes_on(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monkeypatch.setattr(metrics, "_TENSORBOARD_MISSING_SAID", False)
    assert metrics.summary_writer(tmp_path) is None and metrics.summary_writer(tmp_path) is None
    assert capsys.readouterr().err.count("tensorboard package is not installed") == 1
