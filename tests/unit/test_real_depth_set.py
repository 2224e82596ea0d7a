"""The real-depth regression set: provenance complete, enough frames of each kind, labels from geometry."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from helpers_real_depth import (
    BLIND,
    FAR,
    MISSING,
    NEAR,
    REAL_DEPTH,
    allowed,
    depth_sha256,
    frames_dir,
    geometry_label,
    lens_against_wall,
    load_frames,
    manifest,
    raw_image,
)

PROVENANCE = ("repository", "commit", "path", "licence", "sensor", "family", "dataset", "original", "conversion",
              "intrinsics")
STRUCTURED_OR_TOF = {"structured light", "time of flight"}


@pytest.fixture(scope="module")
def frames():
    if frames_dir() is None:
        pytest.skip(MISSING)
    return load_frames()


def test_every_frame_has_its_provenance_and_a_stated_licence():
    records = manifest()["frames"]
    assert len(records) >= 20 and len({r["id"] for r in records}) == len(records)
    for record in records:
        missing = [key for key in PROVENANCE if not record.get(key)]
        assert not missing, f"{record['id']}: no {missing}"
        assert len(record["commit"]) == 40 and int(record["commit"], 16) >= 0, record["id"]
        assert record["family"] in STRUCTURED_OR_TOF | {"active stereo"}, record["id"]
        assert {"fx", "fy", "cx", "cy"} <= set(record["intrinsics"]), record["id"]
        for key in ("source_sha256", "depth_mm_sha256"):
            assert re.fullmatch("[0-9a-f]{64}", record.get(key, "")), f"{record['id']}: no {key}"
    sources = (REAL_DEPTH / "SOURCES.md").read_text()
    assert all(f"`{r['id']}`" in sources for r in records), "SOURCES.md lists every frame"


def test_the_set_spans_datasets_and_sensor_families(frames):
    assert len(frames) >= 20
    assert len({f.source["dataset"] for f in frames}) >= 2
    families = {f.source["family"] for f in frames}
    assert "active stereo" in families and families & STRUCTURED_OR_TOF


def test_frames_are_uint16_millimetres_of_the_recorded_size(frames):
    for frame in frames:
        original = frame.source["original"]
        assert frame.depth_mm.dtype == np.uint16 and frame.depth_mm.shape == (original["height"], original["width"])
        valid = frame.depth_mm[frame.depth_mm > 0]
        assert valid.size > 0.3 * frame.depth_mm.size, frame.id
        assert 100 <= np.median(valid) <= 10_000, f"{frame.id}: median {np.median(valid)} mm is not a room's depth"
    shapes = {f.depth_mm.shape for f in frames}
    assert {(480, 640), (720, 1280)} <= shapes and len(shapes) >= 4


def test_the_repository_holds_the_provenance_and_no_fetched_frame():
    """Fetched data files belong in the steering repository's shared/, never in this one."""
    assert sorted(p.name for p in REAL_DEPTH.iterdir()) == ["SOURCES.md", "frames.json"]
    assert not list(Path(__file__).resolve().parents[1].rglob("*.npz")), "no depth frames under tests/"


def test_the_frames_match_the_manifest(frames):
    assert [f.id for f in frames] == [r["id"] for r in manifest()["frames"]]


def test_the_placed_frames_are_the_recorded_ones(frames):
    """Each stored depth array is the one frames.json records (its depth_mm_sha256), so a copy placed
    in shared/real-depth by hand can be trusted or is caught."""
    different = [f.id for f in frames if f.depth_mm.dtype != np.uint16
                 or depth_sha256(f.depth_mm) != f.source["depth_mm_sha256"]]
    assert not different, f"{frames_dir()}: not the recorded depth (frames.json depth_mm_sha256): {different}"


def test_the_depth_hash_covers_every_value_and_the_shape_comes_from_the_manifest():
    depth = np.arange(12, dtype=np.uint16).reshape(3, 4)
    changed = depth.copy()
    changed[2, 3] += 1
    assert depth_sha256(depth) != depth_sha256(changed)
    assert depth_sha256(depth) == depth_sha256(depth.astype(">u2")) == depth_sha256(np.asfortranarray(depth))


def test_at_least_five_unambiguous_frames_of_each_kind(frames):
    labels = [geometry_label(f.depth_mm) for f in frames]
    assert labels.count(NEAR) >= 5 and labels.count(FAR) >= 5
    for label in (NEAR, FAR):
        kinds = {f.source["family"] for f, lab in zip(frames, labels) if lab == label}
        assert kinds, label
    assert geometry_label(lens_against_wall().depth_mm) == BLIND


def _room(centre_mm: int, surround_mm: int = 3000, size=(48, 64)) -> np.ndarray:
    depth = np.full(size, surround_mm, np.uint16)
    height, width = size
    depth[height // 3: 2 * height // 3, width // 3: 2 * width // 3] = centre_mm
    return depth


@pytest.mark.parametrize("depth, label", [
    (_room(550), NEAR),                              # a wall 0.55 m ahead, open around it
    (_room(600), None),                              # exactly 0.6 m is not below 0.6 m
    (_room(3000, surround_mm=400), FAR),             # open ahead; near things at the sides don't count
    (_room(2500), None),                             # 2.5 m is not beyond 2.5 m
    (np.zeros((48, 64), np.uint16), BLIND),          # the lens against a wall
    (_room(0, surround_mm=3000), BLIND),             # nothing returned ahead
    (_room(1200), None),                             # a wall at 1.2 m: ambiguous by design
])
def test_geometry_label(depth, label):
    assert geometry_label(depth) == label


def test_far_needs_ninety_percent_and_near_uses_the_median_of_valid_pixels():
    depth = _room(3000)
    centre = depth[16:32, 21:42]
    centre.flat[: int(0.11 * centre.size)] = 1000     # 11 % nearer than 2.5 m: not far
    assert geometry_label(depth) is None
    centre[:] = 3000
    centre.flat[: int(0.09 * centre.size)] = 1000     # 9 %: far
    assert geometry_label(depth) == FAR
    near = _room(500)
    near[16:32, 21:42][:, :12] = 0                    # holes do not count toward the median
    assert geometry_label(near) == NEAR


@pytest.mark.parametrize("label, action, ok", [
    (FAR, "forward", True), (FAR, "left", False), (FAR, "stop", False),
    (NEAR, "forward", False), (NEAR, "right", True), (NEAR, "stop", True),
    (BLIND, "forward", False), (BLIND, "stop", True), (None, "forward", True),
])
def test_which_actions_are_right(label, action, ok):
    assert allowed(label, action) is ok


def test_published_images_carry_the_stored_depth_exactly(frames):
    from sim2real.runtime.ros_image import decode_depth

    for frame in frames[:3] + [f for f in frames if f.depth_mm.shape == (720, 1280)][:1]:
        for encoding in ("16UC1", "32FC1"):
            for mirrored in (False, True):
                decoded = decode_depth(raw_image(frame, encoding, mirrored))
                expected = frame.depth_m[:, ::-1] if mirrored else frame.depth_m
                np.testing.assert_array_equal(decoded, expected, err_msg=f"{frame.id} {encoding} {mirrored}")
