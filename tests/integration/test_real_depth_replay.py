"""The real-depth regression set through the node's own pipeline, as `sim2real replay` runs it.

Every frame of ``tests/real_depth`` and its mirror image, and the lens pressed against a wall (no
return anywhere), are written to real rosbag2 files (``record_images``), 16UC1 and 32FC1, and
replayed with ``sim2real replay``: the node's decoding, fail-safe checks, preprocessing and inference.

The model: the tests cannot afford the full pipeline (ten minutes), so a module fixture runs the
real one, scaled down: ``sim2real datagen`` on the default scenario (1500 images, seed 0), ``train``
(ResNet10, 48×48 input, 3 epochs, seed 0) and ``export`` (the INT8 model that ships, gated at 0.9
agreement). It is the same code path as the shipped model, small enough for a few minutes on two
cores. Nothing here depends on its exact outputs except what the contract guarantees for any weights.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers_real_depth import ENCODINGS, MISSING, frames_dir, lens_against_wall, load_frames, replay_frames, score
from sim2real.contracts.actions import FORWARD_SPEED_MPS, TURN_RATE_RADPS

pytestmark = pytest.mark.slow
INVALID_REASON = "of the pixels the model sees hold no return"


def _sim2real(*args: str, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "sim2real", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=1200)
    assert proc.returncode == 0, f"sim2real {args[0]}: {proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("small_model")
    _sim2real("datagen", "--scenario", "default", "--num", "1500", "--out", "data", "--seed", "0", "--workers", "2",
              "--no-progress", cwd=work)
    _sim2real("train", "--data", "data", "--out", "train", "--arch", "resnet10", "--input-size", "48", "--epochs", "3",
              "--seed", "0", "--no-tensorboard", cwd=work)
    _sim2real("export", "--checkpoint", "train/checkpoint.pt", "--out", "model", "--min-int8-agreement", "0.9",
              cwd=work)
    return work / "model" / "model.int8.onnx"


@pytest.fixture(scope="module")
def frames():
    if frames_dir() is None:
        pytest.skip(MISSING)
    return [*load_frames(), lens_against_wall()]


@pytest.fixture(scope="module")
def replays(frames, model, tmp_path_factory) -> dict[str, list[dict]]:
    """The replay records per encoding: frame, mirror image, frame, mirror image, ..."""
    return {encoding: replay_frames(frames, model, encoding, tmp_path_factory.mktemp(encoding))
            for encoding in ENCODINGS}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_frame_gets_a_bounded_command_and_none_is_refused_for_its_shape(replays, frames, encoding):
    records = replays[encoding]
    assert len(records) == 2 * len(frames)
    moves = {(FORWARD_SPEED_MPS, 0.0), (0.0, TURN_RATE_RADPS), (0.0, -TURN_RATE_RADPS), (0.0, 0.0)}
    for record in records:
        assert (record["linear_x"], record["angular_z"]) in moves, record
        if record["action"] == "stop":
            assert INVALID_REASON in record["reason"], record
        else:
            assert len(record["logits"]) == 3 and record["action"] in ("forward", "left", "right")
    rows = {row.id: row for row in score(frames, records)}
    for frame in frames:
        if frame.no_return_fraction <= 0.3:
            assert rows[frame.id].action != "stop", f"{frame.id} ({frame.depth_mm.shape}) was refused"
    wall = rows["lens_against_wall"]
    assert (wall.action, wall.mirror_action) == ("stop", "stop")


def test_16uc1_and_32fc1_give_the_same_commands(replays):
    by_encoding = [[(r["action"], r.get("logits")) for r in replays[encoding]] for encoding in ENCODINGS]
    assert by_encoding[0] == by_encoding[1]
