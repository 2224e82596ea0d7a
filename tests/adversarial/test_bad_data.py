"""Root causes 5 and 6 (data): degenerate datasets, corrupt but self-consistent files, late errors.

Cases 9-15 and 17 of the adversarial list, through the real CLI entry point (`sim2real.cli.main`):
one `sim2real <verb>: error:` line, exit 2, before the work starts, nothing half-written.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from helpers_data import make_toy_dataset
from sim2real.cli import main
from sim2real.contracts.actions import FORWARD
from sim2real.contracts.camera import Intrinsics
from sim2real.contracts.dataset import MANIFEST, write_shard
from sim2real.contracts.manifest import sha256_bytes

pytest.importorskip("torch")


def refused(capsys, argv: list[str], expected: str) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith(f"sim2real {argv[0]}: ")]
    assert len(lines) == 1 and lines[0].startswith(f"sim2real {argv[0]}: error: "), err
    assert expected in lines[0], err
    return lines[0]


def replace_shard(root: Path, index: int, data: bytes) -> None:
    """Overwrite a shard and record its new sha256 in the manifest: corrupt, but self-consistent."""
    manifest = json.loads((root / MANIFEST).read_text())
    shard = manifest["shards"][index]
    (root / shard["file"]).write_bytes(data)
    shard["sha256"] = sha256_bytes(data)
    (root / MANIFEST).write_text(json.dumps(manifest))


@pytest.fixture
def toy(tmp_path):
    return make_toy_dataset(tmp_path / "data", count=96, size=32)


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--input-size", "16",
            "--batch-size", "16", "--no-tensorboard", *extra]


def test_resume_with_a_malformed_progress_file_is_refused(capsys, tmp_path):
    """Case 9: `shards` as a list gave an AttributeError traceback."""
    out = tmp_path / "data"
    out.mkdir()
    (out / "progress.json").write_text(json.dumps({"run": {}, "shards": []}))
    refused(capsys, ["datagen", "--scenario", "tiny", "--num", "4", "--out", str(out), "--resume", "--no-progress"],
            "is not a datagen progress file")
    assert sorted(p.name for p in out.iterdir()) == ["progress.json"]


def test_a_dataset_without_a_class_is_refused_unless_accepted(capsys, tmp_path):
    """Case 10: a one-class dataset trained to val_accuracy 1.0 without a word."""
    root = make_toy_dataset(tmp_path / "one", count=96, size=32)
    manifest = json.loads((root / MANIFEST).read_text())
    for shard in manifest["shards"]:
        with np.load(root / shard["file"]) as data:
            depth, cameras = data["depth_mm"], data["camera"]
        shard["sha256"] = write_shard(root / shard["file"], depth, np.full(len(depth), FORWARD, np.uint8), cameras)
    (root / MANIFEST).write_text(json.dumps(manifest))
    refused(capsys, train_args(root, tmp_path / "out"), "has no 'left', 'right' images (forward 96, left 0, right 0)")
    assert not (tmp_path / "out" / "checkpoint.pt").exists()
    assert main(train_args(root, tmp_path / "out", "--allow-missing-classes")) == 0
    assert (tmp_path / "out" / "checkpoint.pt").exists()


def test_a_shard_that_is_not_an_npz_is_refused(capsys, toy, tmp_path):
    """Case 11: a non-zip shard whose sha256 matches the manifest gave a BadZipFile traceback."""
    replace_shard(toy, 1, b"PK\x03\x04 this is not a zip archive at all")
    refused(capsys, train_args(toy, tmp_path / "out"), "shard-00001.npz is not a readable .npz shard")
    replace_shard(toy, 1, b"\x80\x04\x95 pickled bytes")
    refused(capsys, train_args(toy, tmp_path / "out"), "shard-00001.npz is not a readable .npz shard")
    assert not (tmp_path / "out").exists()


def _cameras(count: int, size: int = 32) -> np.ndarray:
    return np.tile(Intrinsics.from_fov(size, size, 87.0).to_list(), (count, 1))


@pytest.mark.parametrize("arrays, expected", [
    ({"depth_mm": np.zeros((48, 32, 32), np.uint16), "camera": _cameras(48)}, "lacks the array(s) label"),
    ({"depth_mm": np.zeros((48, 32, 32), np.uint16), "label": np.zeros(48, np.uint8)}, "lacks the array(s) camera"),
    ({"depth_mm": np.zeros((48, 32, 32), np.float32), "label": np.zeros(48, np.uint8), "camera": _cameras(48)},
     "expected (N, H, W) uint16"),
    ({"depth_mm": np.zeros((48, 32, 32), np.uint16), "label": np.full(48, 7, np.uint8), "camera": _cameras(48)},
     "outside the action space"),
    ({"depth_mm": np.zeros((48, 16, 16), np.uint16), "label": np.zeros(48, np.uint8), "camera": _cameras(48, 16)},
     "holds 16x16 images"),
    ({"depth_mm": np.zeros((47, 32, 32), np.uint16), "label": np.zeros(47, np.uint8), "camera": _cameras(47)},
     "the manifest says 48"),
    ({"depth_mm": np.zeros((48, 32, 32), np.uint16), "label": np.zeros(48, np.uint8), "camera": _cameras(48, 64)},
     "an image's width x height exceeds the shard's 32x32"),
])
def test_a_shard_with_the_wrong_arrays_is_refused(capsys, toy, tmp_path, arrays, expected):
    """Case 12: a shard without `label` gave a KeyError traceback."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    replace_shard(toy, 1, buffer.getvalue())
    refused(capsys, train_args(toy, tmp_path / "out"), expected)


def test_an_input_size_beyond_the_bound_is_refused(capsys, toy, tmp_path):
    """Case 13: `--input-size 100000` ran out of memory with a traceback."""
    refused(capsys, train_args(toy, tmp_path / "out") + ["--input-size", "100000"],
            "input_size must be an integer from 16 to 1024, got 100000")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("make_out, expected", [
    (lambda tmp: Path("/proc/sim2real-no-such-place/train"), "is not writable"),                    # case 14
    (lambda tmp: (tmp / "file").write_text("x") and tmp / "file", "exists and is not a folder"),  # case 15
    (lambda tmp: (tmp / "f2").write_text("x") and tmp / "f2" / "sub", "is not a folder"),
])
def test_an_unusable_output_is_refused_before_the_data_is_read(capsys, toy, tmp_path, make_out, expected):
    """Cases 14 and 15: a read-only or file --out failed only after the whole run.

    The dataset here is corrupt too: the output error must come first, before any data is read.
    """
    replace_shard(toy, 0, b"not a shard")
    refused(capsys, train_args(toy, make_out(tmp_path)), expected)


def test_export_threshold_outside_zero_to_one_is_refused_before_any_work(capsys, tmp_path):
    """Case 17: `--min-int8-agreement 1.5` failed after the export and left model.onnx behind."""
    out = tmp_path / "model"
    refused(capsys, ["export", "--checkpoint", str(tmp_path / "checkpoint.pt"), "--out", str(out),
                     "--min-int8-agreement", "1.5"], "min_int8_agreement must be a fraction between 0 and 1")
    assert not out.exists()
