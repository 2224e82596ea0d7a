"""`sim2real calibrate` on real sensors' frames: the fitted sensor model reproduces their holes.

The real-depth set (``helpers_real_depth``; fetched data, not in this repository: skipped with one
line where it is absent) is recorded per sensor family (structured light, active stereo, time of
flight) into a rosbag2, each frame with its own CameraInfo, and calibrated. The simulator's
sensor model with the fitted values is then applied to each frame's own geometry, the frame with
its small holes filled (:func:`~sim2real.calibrate.fit.fill_small_holes`: holes within
``FILL_SHARE`` of the width of a reading take the far side's depth; larger no-return regions, which
the model does not explain, stay). The simulated frames must show the recording's statistics
(:func:`~sim2real.calibrate.fit.hole_statistics`) within ``TOLERANCE``: each figure within an
absolute or a relative margin, whichever is larger (a figure the recording shows too little of, such
as shadows where no step goes from far to near, is not compared).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from helpers_real_depth import MISSING, frames_dir, load_frames
from sim2real.calibrate.fit import Frame, fill_small_holes, hole_statistics
from sim2real.cli import main
from sim2real.contracts.camera import Intrinsics
from sim2real.contracts.scenario import load_scenario
from sim2real.sim.sensors import apply_sensor_model
from sim2real.sim.world import CameraSample

pytest.importorskip("rosbags")
pytestmark = pytest.mark.timeout(300)

FILL_PX = 2
# figure: (absolute, relative) margin
TOLERANCE = {"hole_fraction": (0.05, 0.25), "isolated_holes": (0.003, 0.3), "edge_pixel_missing": (0.1, 0.0),
             "shadow_gap_px": (1.5, 0.35)}


def _intrinsics(frame) -> Intrinsics:
    height, width = frame.depth_mm.shape
    k = frame.source.get("intrinsics")
    if not k:
        return Intrinsics.from_fov(width, height, 60.0)
    return Intrinsics(width, height, float(k["fx"]), float(k["fy"]), float(k["cx"]), float(k["cy"]))


def record_family(bag: Path, frames) -> Path:
    """Each frame as 16UC1 (its stored millimetres) after its own CameraInfo, 1/30 s apart."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore
    from sim2real.runtime.replay import CAMERA_INFO_TYPE, IMAGE_TYPE, camera_info_message

    store = get_typestore(Stores.LATEST)
    time_cls, header_cls = store.types["builtin_interfaces/msg/Time"], store.types["std_msgs/msg/Header"]
    with Writer(bag, version=Writer.VERSION_LATEST, storage_plugin=StoragePlugin.MCAP) as writer:
        images = writer.add_connection("/camera/depth/image_raw", IMAGE_TYPE, typestore=store)
        infos = writer.add_connection("/camera/depth/camera_info", CAMERA_INFO_TYPE, typestore=store)
        for index, frame in enumerate(frames):
            t = 10**9 + index * 33_333_333
            header = header_cls(stamp=time_cls(sec=t // 10**9, nanosec=t % 10**9), frame_id="depth")
            writer.write(infos, t, store.serialize_cdr(camera_info_message(store, header, _intrinsics(frame)),
                                                       CAMERA_INFO_TYPE))
            height, width = frame.depth_mm.shape
            msg = store.types[IMAGE_TYPE](header=header, height=height, width=width, encoding="16UC1",
                                          is_bigendian=0, step=2 * width,
                                          data=np.ascontiguousarray(frame.depth_mm, "<u2").view(np.uint8).ravel())
            writer.write(images, t, store.serialize_cdr(msg, IMAGE_TYPE))
    return bag


def simulate(frames, scenario, seed: int = 0) -> list[Frame]:
    """The sensor model with the scenario's (fitted) noise applied to each frame's filled geometry."""
    rng = np.random.default_rng(seed)
    noise, out = scenario.noise, []
    for frame in frames:
        camera = _intrinsics(frame)
        ideal = fill_small_holes(frame.depth_m, FILL_PX)
        sample = CameraSample(0.25, 0.0, math.degrees(2 * math.atan(camera.width / 2 / camera.fx)),
                              noise.stereo_sigma_per_m2, noise.dropout, edge_hole_prob=noise.edge_hole_prob,
                              edge_jump_m=noise.edge_jump_m, shadow_baseline_m=noise.shadow_baseline_m,
                              quantization_m=noise.quantization_m, quantization_mode=noise.quantization_mode,
                              min_range_m=scenario.camera.min_range_m, max_return_m=noise.max_return_m)
        depth = apply_sensor_model(ideal, scenario.camera, sample, rng)
        out.append(Frame(np.round(depth * 1000) / 1000, camera.fx, millimetres=True))
    return out


def close(simulated: float, real: float, key: str) -> bool:
    absolute, relative = TOLERANCE[key]
    return abs(simulated - real) <= max(absolute, relative * abs(real))


@pytest.fixture(scope="module")
def real_frames():
    if frames_dir() is None:
        pytest.skip(MISSING)
    return load_frames()


@pytest.mark.parametrize("family", ["structured light", "active stereo", "time of flight"])
def test_the_fitted_sensor_model_reproduces_real_holes_and_edges(real_frames, tmp_path, capsys, family):
    frames = [f for f in real_frames if f.source.get("family") == family]
    assert frames, f"no {family} frame in the set"
    bag = record_family(tmp_path / "bag", frames)
    out = tmp_path / "fitted.yaml"
    assert main(["calibrate", "--bag", str(bag), "--out", str(out)]) == 0, capsys.readouterr().err
    scenario = load_scenario(out)
    noise = scenario.noise
    limits = (noise.edge_jump_m, scenario.camera.min_range_m, noise.max_return_m)
    real = hole_statistics([Frame(f.depth_m, _intrinsics(f).fx, millimetres=True) for f in frames], *limits)
    simulated = hole_statistics(simulate(frames, scenario), *limits)
    shown = [key for key in TOLERANCE if real[key] is not None]
    assert "hole_fraction" in shown and "isolated_holes" in shown
    assert all(simulated[key] is not None for key in shown), (simulated, real)
    off = {key: (round(simulated[key], 4), round(real[key], 4)) for key in shown
           if not close(simulated[key], real[key], key)}
    assert not off, f"{family}: simulated vs real {off} (fitted {noise.model_dump()})"
