"""The real-depth regression set: loading, geometric labels, replay and scoring.

Every frame is a real sensor's depth image taken from a public repository (provenance in
``tests/real_depth/frames.json`` and ``SOURCES.md``), stored as ``<id>.npz`` of uint16 millimetres,
0 = no return. The frames are fetched data, which this repository does not hold: they live in the
steering repository's ``shared/real-depth/`` (the rule for fetched data files), and
:func:`frames_dir` finds them there, beside or inside the checkout, or at ``SIM2REAL_REAL_DEPTH_DIR``.
``frames.json`` records the sha256 of each source file (``source_sha256``, the bytes at that
repository, commit and path) and of each stored depth array (``depth_mm_sha256``, see
:func:`depth_sha256`), so a copy can be checked against the record.

Which frames are unambiguous is decided by geometry alone, never by looking at them:

- ``near``: the median valid depth in the central third (rows and columns) is below 0.6 m: an
  obstacle fills the view ahead, so the command must not be ``forward``;
- ``far``: at least 90 % of the valid pixels in that central third lie beyond 2.5 m: the way ahead
  is open, so the command must be ``forward``;
- ``blind``: the central third holds no valid pixel at all (the lens against a wall reads as no
  return everywhere): never ``forward``;
- anything else is not labelled (``None``) and is checked only for crashes and mirror consistency.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sim2real.contracts.actions import ACTIONS
from sim2real.contracts.camera import Intrinsics
from sim2real.runtime.ros_image import RawImage, encode_depth

REAL_DEPTH = Path(__file__).parent / "real_depth"
_REPO = Path(__file__).resolve().parents[1]
DATA_DIRS = (_REPO.parent / "shared" / "real-depth", _REPO / "shared" / "real-depth")
NEAR_MEDIAN_M = 0.6
FAR_DEPTH_M = 2.5
FAR_SHARE = 0.9
NEAR, FAR, BLIND = "near", "far", "blind"
MIRRORED = {"forward": "forward", "left": "right", "right": "left", "stop": "stop"}
ENCODINGS = ("16UC1", "32FC1")


@dataclass(frozen=True)
class Frame:
    """One frame of the set: ``depth_mm`` (H, W) uint16, 0 = no return, and its provenance record."""

    id: str
    depth_mm: np.ndarray
    source: dict

    @property
    def depth_m(self) -> np.ndarray:
        """Metres, NaN where the sensor gave no return (the 32FC1 convention)."""
        depth = self.depth_mm.astype(np.float32) / 1000.0
        depth[self.depth_mm == 0] = np.nan
        return depth

    @property
    def no_return_fraction(self) -> float:
        return float(np.count_nonzero(self.depth_mm == 0)) / self.depth_mm.size

    @property
    def intrinsics(self) -> Intrinsics:
        """The camera's intrinsics as its CameraInfo would carry them (``frames.json``)."""
        k = self.source["intrinsics"]
        height, width = self.depth_mm.shape
        return Intrinsics(width, height, k["fx"], k["fy"], k["cx"], k["cy"])


def depth_sha256(depth_mm: np.ndarray) -> str:
    """sha256 of a stored depth array's values: uint16, little-endian, row-major (``depth_mm_sha256``)."""
    return hashlib.sha256(np.ascontiguousarray(depth_mm, dtype="<u2").tobytes()).hexdigest()


def manifest(folder: Path = REAL_DEPTH) -> dict:
    return json.loads((folder / "frames.json").read_text())


def frames_dir() -> Path | None:
    """Where the frames are: ``SIM2REAL_REAL_DEPTH_DIR``, else ``shared/real-depth`` beside or inside
    the checkout; None when no folder holds every frame of the manifest."""
    configured = os.environ.get("SIM2REAL_REAL_DEPTH_DIR")
    ids = [source["id"] for source in manifest()["frames"]]
    for folder in ([Path(configured)] if configured else DATA_DIRS):
        if all((folder / f"{frame_id}.npz").is_file() for frame_id in ids):
            return folder
    return None


MISSING = ("the real depth frames are fetched data kept in the steering repository's shared/real-depth/, "
           "not in this repository, and no copy was found (tests/real_depth/SOURCES.md; "
           "SIM2REAL_REAL_DEPTH_DIR points at a local copy)")


def load_frames() -> list[Frame]:
    """Every frame of the set, in manifest order (FileNotFoundError when the frames are not here)."""
    folder = frames_dir()
    if folder is None:
        raise FileNotFoundError(MISSING)
    frames = []
    for source in manifest()["frames"]:
        with np.load(folder / f"{source['id']}.npz") as data:
            frames.append(Frame(source["id"], data["depth_mm"], source))
    return frames


def lens_against_wall(height: int = 480, width: int = 640) -> Frame:
    """The camera pressed against a wall: no return anywhere (made here, not a recorded frame), seen by
    a nominal 640x480 structured-light camera (the Kinect v1's intrinsics)."""
    return Frame("lens_against_wall", np.zeros((height, width), np.uint16),
                 {"id": "lens_against_wall", "family": "none", "sensor": "constructed: all pixels no return",
                  "intrinsics": {"fx": 525.0 * width / 640, "fy": 525.0 * height / 480,
                                 "cx": (width - 1) / 2, "cy": (height - 1) / 2}})


def central_third(image: np.ndarray) -> np.ndarray:
    height, width = image.shape
    return image[height // 3: 2 * height // 3, width // 3: 2 * width // 3]


def geometry_label(depth_mm: np.ndarray) -> str | None:
    """``near``, ``far``, ``blind`` or None (ambiguous), from the depth alone (see the module docstring)."""
    centre = central_third(np.asarray(depth_mm))
    valid = centre[centre > 0].astype(np.float64) / 1000.0
    if valid.size == 0:
        return BLIND
    if np.median(valid) < NEAR_MEDIAN_M:
        return NEAR
    if np.count_nonzero(valid > FAR_DEPTH_M) >= FAR_SHARE * valid.size:
        return FAR
    return None


def allowed(label: str | None, action: str) -> bool:
    """Whether ``action`` (forward/left/right/stop) is right for a frame with this geometric label."""
    if label == FAR:
        return action == "forward"
    if label in (NEAR, BLIND):
        return action != "forward"
    return True


def raw_image(frame: Frame, encoding: str, mirrored: bool = False) -> RawImage:
    """The frame as a camera driver would publish it: 16UC1 millimetres (the stored values exactly) or
    32FC1 metres (NaN = no return); ``mirrored`` flips it left–right."""
    depth = frame.depth_m[:, ::-1] if mirrored else frame.depth_m
    return encode_depth(np.ascontiguousarray(depth), encoding)


def replay_frames(frames: list[Frame], model: Path, encoding: str, folder: Path, *extra_args: str,
                  camera_info: bool = False) -> list[dict]:
    """Record ``frames`` (each followed by its mirror image) into a rosbag2 and run ``sim2real replay``
    over it, in this process, exactly as a user would; return the JSON records in bag order.

    With ``camera_info``, each image follows a CameraInfo with its frame's intrinsics (mirrored for
    the mirror image), as the camera's driver publishes them; without, the node assumes the model's
    trained horizontal field of view. The frames are unrelated stills, each judged on its own: the
    turn hysteresis, which carries a turn from one image to the next, is off (it is mirror-equivariant
    over sequences, tested in tests/unit/test_hysteresis.py)."""
    from sim2real.runtime.cli import main
    from sim2real.runtime.replay import record_images

    name = f"real_{encoding}{'_camera_info' if camera_info else ''}"
    bag, out = folder / name, folder / f"{name}.actions.jsonl"

    def item(index: int, frame: Frame, mirrored: bool) -> tuple:
        stamped = (10**9 + index * 33_000_000, raw_image(frame, encoding, mirrored))
        if not camera_info:
            return stamped
        return (*stamped, frame.intrinsics.mirrored() if mirrored else frame.intrinsics)

    images = (item(index, frame, mirrored)
              for index, (frame, mirrored) in enumerate((f, m) for f in frames for m in (False, True)))
    assert record_images(bag, images) == 2 * len(frames)
    code = main(["replay", "--bag", str(bag), "--model", str(model), "--out", str(out), "--hysteresis", "off",
                 *extra_args])
    assert code == 0, f"sim2real replay exited with {code}"
    return [json.loads(line) for line in out.read_text().splitlines()]


@dataclass(frozen=True)
class Row:
    """One frame's outcome: the action for the frame and for its mirror image.

    ``margin`` is the top-two logit gap; ``forward_gap`` how far the forward logit lies below the
    best turn (negative: forward won); ``tie`` whether either image's action came from an exact
    left/right tie (which resolves to left for both, so it is reported, not counted as consistent).
    """

    id: str
    family: str
    label: str | None
    action: str
    mirror_action: str
    reason: str | None
    margin: float | None
    forward_gap: float | None = None
    tie: bool = False

    @property
    def mirror_consistent(self) -> bool:
        return self.mirror_action == MIRRORED[self.action]

    @property
    def right(self) -> bool:
        return allowed(self.label, self.action)


def score(frames: list[Frame], records: list[dict]) -> list[Row]:
    """Pair the replay records (frame, mirror, frame, mirror, ...) with their frames."""
    assert len(records) == 2 * len(frames), f"{len(records)} records for {len(frames)} frames and their mirrors"
    rows = []
    for frame, original, mirror in zip(frames, records[0::2], records[1::2]):
        logits = original.get("logits")
        margin = None if logits is None else float(np.diff(np.sort(logits)[-2:])[0])
        gap = None if logits is None else float(max(logits[ACTIONS.index(turn)] for turn in ("left", "right"))
                                                - logits[ACTIONS.index("forward")])
        rows.append(Row(frame.id, frame.source.get("family", ""), geometry_label(frame.depth_mm),
                        original["action"], mirror["action"], original.get("reason"), margin, gap,
                        bool(original.get("tie") or mirror.get("tie"))))
    return rows


def summary(rows: list[Row]) -> dict:
    """Mirror consistency and the unambiguous frames' results (the closing note's figures)."""
    labelled = [row for row in rows if row.label in (NEAR, FAR)]
    return {"frames": len(rows),
            "mirror_consistent": sum(row.mirror_consistent for row in rows),
            "left_right_ties": sum(row.tie for row in rows),
            "refused": sum(row.action == "stop" for row in rows),
            **{f"{label}_right": f"{sum(r.right for r in rows if r.label == label)}/"
                                 f"{sum(r.label == label for r in rows)}" for label in (NEAR, FAR)},
            "unambiguous_right": f"{sum(row.right for row in labelled)}/{len(labelled)}"}


def table(rows: list[Row]) -> str:
    """A Markdown table of ``rows`` (for reports)."""
    lines = ["| frame | family | label | action | mirror image | consistent | right | top-2 margin | turn − forward |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        margin = "" if row.margin is None else f"{row.margin:.3f}"
        gap = "" if row.forward_gap is None else f"{row.forward_gap:+.3f}"
        right = "" if row.label is None else "yes" if row.right else "NO"
        consistent = "tie" if row.tie else "yes" if row.mirror_consistent else "NO"
        lines.append(f"| {row.id} | {row.family} | {row.label or ''} | {row.action} | {row.mirror_action} | "
                     f"{consistent} | {right} | {margin} | {gap} |")
    return "\n".join(lines)
