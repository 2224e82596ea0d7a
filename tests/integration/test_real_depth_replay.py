"""The real-depth regression set through the node's own pipeline, as `sim2real replay` runs it.

Every frame of ``tests/real_depth`` and its mirror image, and the lens pressed against a wall (no
return anywhere), are written to real rosbag2 files (``record_images``), 16UC1 and 32FC1, and
replayed with ``sim2real replay``: the node's decoding, fail-safe checks, camera mapping,
preprocessing and inference. Two views of each frame: ``camera_info``, each image after a
CameraInfo with its frame's intrinsics (mirrored for the mirror image), as the camera's driver
publishes them; and ``assumed``, no CameraInfo at all (the node takes the model's trained horizontal
field of view, the fallback a user meets first).

What is asserted (issue 12, item 5). For any model the pipeline makes: no crash and a bounded
command for every image; 100 % mirror consistency (exact left/right ties, which resolve to left on
both sides, are counted apart); no frame refused for its shape (refusals only for no-return pixels,
or, with CameraInfo, for a field of view below the model's documented minimum overlap); 16UC1 and
32FC1 alike. For the model that ships: every geometrically unambiguous frame right (``near`` never
forward, ``far`` forward, the lens against the wall never forward) with the frames' own
intrinsics, at least five frames in each group.

The models. The contract holds for any weights, so a module fixture runs the real pipeline, scaled
down: ``sim2real datagen`` on the default scenario (1500 images, seed 0), ``train`` (ResNet10,
48-pixel wide input, 3 epochs, seed 0) and ``export`` (the INT8 model that ships, gated at 0.9
agreement), about six minutes on two cores. Being right on the unambiguous frames is a property of
a trained policy, not of the code: a model that small is right or wrong on the closest calls by
chance (one more epoch turns a 0.60 m tabletop frame forward), so that is asserted on the model
that ships: ``SIM2REAL_REAL_DEPTH_MODEL``, else ``make run``'s latest
(``$SIM2REAL_ARTIFACTS/latest/model/model.int8.onnx``, replay's default), else skipped with one
line. ``SIM2REAL_REAL_DEPTH_MODEL`` also replaces the small model in the other tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_real_depth import (
    BLIND,
    ENCODINGS,
    FAR,
    MISSING,
    NEAR,
    frames_dir,
    lens_against_wall,
    load_frames,
    replay_frames,
    score,
    summary,
    table,
)
from sim2real.contracts.actions import FORWARD_SPEED_MPS, TURN_RATE_RADPS

pytestmark = pytest.mark.slow
INVALID_REASON = "of the pixels the model sees hold no return"
FOV_REASON = "field of view, below the"
VIEWS = ("camera_info", "assumed")


def _sim2real(*args: str, cwd: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "sim2real", *args], cwd=cwd, capture_output=True, text=True, check=False,
                          timeout=1200)
    assert proc.returncode == 0, f"sim2real {args[0]}: {proc.stderr[-3000:]}"


@pytest.fixture(scope="module")
def frames():
    if frames_dir() is None:
        pytest.skip(MISSING)
    return [*load_frames(), lens_against_wall()]


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    configured = os.environ.get("SIM2REAL_REAL_DEPTH_MODEL")
    if configured:
        assert Path(configured).is_file(), f"SIM2REAL_REAL_DEPTH_MODEL={configured}: no such model file"
        return Path(configured)
    work = tmp_path_factory.mktemp("small_model")
    _sim2real("datagen", "--scenario", "default", "--num", "1500", "--out", "data", "--seed", "0", "--workers", "2",
              "--no-progress", cwd=work)
    _sim2real("train", "--data", "data", "--out", "train", "--arch", "resnet10", "--input-size", "48", "--epochs", "3",
              "--seed", "0", "--no-tensorboard", cwd=work)
    _sim2real("export", "--checkpoint", "train/checkpoint.pt", "--out", "model", "--min-int8-agreement", "0.9",
              cwd=work)
    return work / "model" / "model.int8.onnx"


@pytest.fixture(scope="module")
def shipped_model() -> Path:
    """The model that ships: ``SIM2REAL_REAL_DEPTH_MODEL``, else ``make run``'s latest; skipped without one."""
    configured = os.environ.get("SIM2REAL_REAL_DEPTH_MODEL")
    if configured:
        return Path(configured)
    from sim2real.contracts.model_contract import ModelContractError
    from sim2real.runtime.cli import _default_model
    from sim2real.runtime.policy import ModelPolicy

    latest = Path(_default_model())
    latest = latest if latest.is_absolute() else Path(__file__).resolve().parents[2] / latest
    if not latest.is_file():
        pytest.skip(f"no model that ships to judge on the unambiguous real frames: {latest} is absent "
                    "(make run writes it; SIM2REAL_REAL_DEPTH_MODEL names another)")
    try:
        ModelPolicy(latest)
    except (ModelContractError, ValueError) as exc:
        pytest.skip(f"{latest} is not a model of this sim2real: {str(exc).splitlines()[0]}")
    return latest


@pytest.fixture(scope="module")
def replays(frames, model, tmp_path_factory) -> dict[tuple[str, str], list[dict]]:
    """The replay records per (encoding, view): frame, mirror image, frame, mirror image, ..."""
    return {(encoding, view): replay_frames(frames, model, encoding, tmp_path_factory.mktemp(encoding),
                                            camera_info=view == "camera_info")
            for encoding in ENCODINGS for view in VIEWS}


@pytest.fixture(scope="module")
def too_narrow(frames, model) -> set[str]:
    """The frames whose camera covers less than the model's minimum overlap of its field of view."""
    from sim2real.runtime.policy import ModelPolicy

    policy = ModelPolicy(model)
    low = policy.camera.min_overlap
    return {f.id for f in frames if min(policy.mapping(f.intrinsics).coverage) < low}


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_frame_gets_a_bounded_command_and_none_is_refused_for_its_shape(replays, frames, too_narrow,
                                                                              encoding, view):
    records = replays[encoding, view]
    assert len(records) == 2 * len(frames)
    moves = {(FORWARD_SPEED_MPS, 0.0), (0.0, TURN_RATE_RADPS), (0.0, -TURN_RATE_RADPS), (0.0, 0.0)}
    for record in records:
        assert (record["linear_x"], record["angular_z"]) in moves, record
        if record["action"] == "stop":
            assert INVALID_REASON in record["reason"] or (view == "camera_info" and FOV_REASON in record["reason"]), \
                record
        else:
            assert len(record["logits"]) == 3 and record["action"] in ("forward", "left", "right")
    rows = {row.id: row for row in score(frames, records)}
    refused_for_view = {row.id for row in rows.values() if row.reason and FOV_REASON in row.reason}
    assert refused_for_view == (too_narrow if view == "camera_info" else set())
    served_shapes = set()
    for frame in frames:
        if frame.no_return_fraction <= 0.3 and frame.id not in refused_for_view:
            assert rows[frame.id].action != "stop", f"{frame.id} ({frame.depth_mm.shape}) was refused"
            served_shapes.add(frame.depth_mm.shape)
    assert {(480, 640), (424, 512), (576, 640), (720, 1280)} <= served_shapes
    wall = rows["lens_against_wall"]
    assert (wall.action, wall.mirror_action) == ("stop", "stop")


@pytest.mark.parametrize("view", VIEWS)
@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_mirror_image_gets_the_mirrored_command(replays, frames, encoding, view):
    rows = score(frames, replays[encoding, view])
    broken = [row.id for row in rows if not row.tie and not row.mirror_consistent]
    assert not broken, f"not mirror-consistent: {broken}\n{table(rows)}"
    for row in rows:
        if row.tie:   # an exact tie resolves to left on both sides: reported, and symmetric
            assert (row.action, row.mirror_action) == ("left", "left"), row


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_every_unambiguous_frame_is_right_with_its_camera_info(frames, shipped_model, request, encoding, tmp_path):
    records = (request.getfixturevalue("replays")[encoding, "camera_info"]
               if os.environ.get("SIM2REAL_REAL_DEPTH_MODEL") else
               replay_frames(frames, shipped_model, encoding, tmp_path, camera_info=True))
    rows = score(frames, records)
    groups = {label: [row for row in rows if row.label == label] for label in (NEAR, FAR, BLIND)}
    assert len(groups[NEAR]) >= 5 and len(groups[FAR]) >= 5 and "lens_against_wall" in {r.id for r in groups[BLIND]}
    wrong = [row.id for group in groups.values() for row in group if not row.right]
    assert not wrong, f"wrong on unambiguous frames {wrong}: {summary(rows)}\n{table(rows)}"


@pytest.mark.parametrize("view", VIEWS)
def test_16uc1_and_32fc1_give_the_same_commands(replays, view):
    by_encoding = [[(r["action"], r.get("logits")) for r in replays[encoding, view]] for encoding in ENCODINGS]
    assert by_encoding[0] == by_encoding[1]
