"""`sim2real calibrate` on real rosbag2 files: known sensors are recovered, bad recordings refused.

The simulator (MuJoCo worlds of the default scenario, the project's sensor model) records two
sensors with known settings, each into a real rosbag2 (MCAP with 16UC1 images, sqlite3 with
32FC1): a stereo camera (shadows, disparity quantisation, no far cut) and a structured-light-like
one (a far cut, depth quantisation, no shadow). The recording drives through four worlds and then
holds still for eight frames, as one would record a calibration. ``calibrate`` must give back each
value within 20 %, or within the absolute tolerance in ``ZERO_TOLERANCE`` where it is 0.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from sim2real.cli import main
from sim2real.contracts.camera import Intrinsics
from sim2real.contracts.scenario import ScenarioError, load_scenario
from sim2real.runtime.replay import record_images
from sim2real.runtime.ros_image import RawImage
from sim2real.sim.sensors import apply_sensor_model, encode_depth
from sim2real.sim.world import nominal_camera, sample_free_pose, sample_world

pytest.importorskip("rosbags")
pytest.importorskip("mujoco")
pytestmark = pytest.mark.timeout(300)

STEREO = {"stereo_sigma_per_m2": 0.005, "dropout": 0.01, "edge_hole_prob": 0.3, "shadow_baseline_m": 0.05,
          "quantization_m": 0.003, "quantization_mode": "disparity", "min_range_m": 0.25, "max_return_m": 0.0}
STRUCTURED = {"stereo_sigma_per_m2": 0.008, "dropout": 0.02, "edge_hole_prob": 0.5, "shadow_baseline_m": 0.0,
              "quantization_m": 0.004, "quantization_mode": "depth", "min_range_m": 0.45, "max_return_m": 4.0}
# Where the true value is 0, the fitted one must be within this (same unit as the key).
ZERO_TOLERANCE = {"shadow_baseline_m": 0.005, "quantization_m": 1e-4, "max_return_m": 0.0, "dropout": 0.002,
                  "edge_hole_prob": 0.03, "stereo_sigma_per_m2": 0.0005}
FRAME_NS = 33_000_000


def render(settings: dict, seed: int = 0, worlds: int = 4, per_world: int = 10, still: int = 8):
    """Depth frames (metres, NaN = no return) the simulator's camera gives with ``settings``, and its intrinsics."""
    from sim2real.sim.mujoco_backend import MujocoBackend

    scenario = load_scenario("default")
    camera = dataclasses.replace(nominal_camera(scenario), **settings)
    rng = np.random.default_rng(seed)
    backend = MujocoBackend(scenario)
    ideals = []
    for _ in range(worlds):
        world = sample_world(scenario, rng)
        backend.load(world)
        ideals += [backend.render_ideal(sample_free_pose(world, 0.22, rng), camera) for _ in range(per_world)]
    backend.close()
    ideals += [ideals[-1]] * still
    frames = [apply_sensor_model(ideal, scenario.camera, camera, rng) for ideal in ideals]
    return frames, camera.intrinsics(scenario.camera)


def raw(depth_m: np.ndarray, encoding: str) -> RawImage:
    data = encode_depth(depth_m, encoding)
    return RawImage(data.shape[0], data.shape[1], encoding, 0, data.shape[1] * data.itemsize, data.tobytes())


def record(bag: Path, frames, intrinsics: Intrinsics, encoding: str, storage: str) -> Path:
    images = ((10**9 + i * FRAME_NS, raw(frame, encoding)) for i, frame in enumerate(frames))
    assert record_images(bag, images, storage=storage, intrinsics=intrinsics) == len(frames)
    return bag


def recovered(fitted: float, true: float, key: str) -> bool:
    if true == 0:
        return abs(fitted) <= ZERO_TOLERANCE[key]
    return abs(fitted - true) <= 0.2 * abs(true)


@pytest.mark.parametrize("name, settings, encoding, storage", [
    ("stereo", STEREO, "16UC1", "mcap"),
    ("structured", STRUCTURED, "32FC1", "sqlite3"),
])
def test_a_simulated_recording_gives_back_its_sensor(tmp_path, capsys, name, settings, encoding, storage):
    frames, intrinsics = render(settings)
    bag = record(tmp_path / name, frames, intrinsics, encoding, storage)
    out, report = tmp_path / "overlay" / f"{name}.yaml", tmp_path / f"{name}.json"
    assert main(["calibrate", "--bag", str(bag), "--out", str(out), "--json", str(report)]) == 0, \
        capsys.readouterr().err
    scenario = load_scenario(out)
    fitted = {**scenario.noise.model_dump(), "min_range_m": scenario.camera.min_range_m}
    wrong = {key: (fitted[key], true) for key, true in settings.items()
             if key != "quantization_mode" and not recovered(fitted[key], true, key)}
    assert not wrong, f"{name}: fitted vs true {wrong}"
    assert fitted["quantization_mode"] == settings["quantization_mode"]
    # The overlay changes the sensor and nothing else, and datagen draws near the fitted values.
    base = load_scenario("default")
    assert scenario.arena == base.arena and scenario.camera.hfov_deg == base.camera.hfov_deg
    assert scenario.name == "default-calibrated" and yaml.safe_load(out.read_text())["base"] == "default"
    low, high = scenario.randomization.edge_hole_prob
    assert low <= scenario.noise.edge_hole_prob <= high and high - low == pytest.approx(
        0.5 * scenario.noise.edge_hole_prob, abs=1e-5)
    assert len(yaml.safe_load(report.read_text())["bag_sha256"]) == 64
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]


def test_spread_zero_makes_datagen_draw_the_fitted_value(tmp_path, capsys):
    frames, intrinsics = render(STRUCTURED, seed=3, worlds=2, per_world=6, still=4)
    bag = record(tmp_path / "bag", frames, intrinsics, "16UC1", "mcap")
    out, report = tmp_path / "exact.yaml", tmp_path / "fit.json"
    assert main(["calibrate", "--bag", str(bag), "--out", str(out), "--spread", "0", "--max-frames", "10",
                 "--json", str(report)]) == 0, capsys.readouterr().err
    assert json.loads(report.read_text())["frames"] == 10, "thinned to --max-frames"
    scenario = load_scenario(out)
    assert scenario.randomization.dropout == (scenario.noise.dropout, scenario.noise.dropout)
    assert scenario.randomization.min_range_m == (scenario.camera.min_range_m,) * 2


# ----------------------------------------------------------------------------- bad recordings
def write_bag(path: Path, messages: list[tuple[str, str, int, object]], storage: str = "mcap",
              compression: str | None = None) -> Path:
    """A rosbag2 of ``(topic, type, log time ns, rosbags message)``; ``compression``: ``file`` or
    ``message`` (zstd, as ``ros2 bag record --compression-mode``)."""
    from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.LATEST)
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    writer = Writer(path, version=Writer.VERSION_LATEST, storage_plugin=plugin)
    if compression:
        writer.set_compression(CompressionMode[compression.upper()], CompressionFormat.ZSTD)
    with writer:
        connections = {}
        for topic, msgtype, t_ns, msg in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(connections[topic], t_ns, store.serialize_cdr(msg, msgtype))
    return path


def _store():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.LATEST)


def _header(store, stamp_ns: int):
    time_cls, header_cls = store.types["builtin_interfaces/msg/Time"], store.types["std_msgs/msg/Header"]
    return header_cls(stamp=time_cls(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id="depth")


def _image(store, stamp_ns: int, encoding: str = "16UC1", size=(24, 32), value: int = 1500):
    data = np.full(size, value, np.uint16).view(np.uint8).ravel() if encoding == "16UC1" else \
        np.zeros(size[0] * size[1] * 3, np.uint8)
    return store.types["sensor_msgs/msg/Image"](
        header=_header(store, stamp_ns), height=size[0], width=size[1], encoding=encoding, is_bigendian=0,
        step=size[1] * (2 if encoding == "16UC1" else 3), data=data)


def _info(store, stamp_ns: int, size=(24, 32)):
    from sim2real.runtime.replay import camera_info_message

    return camera_info_message(store, _header(store, stamp_ns), Intrinsics.from_fov(size[1], size[0], 87.0))


IMAGE, INFO = "/camera/depth/image_raw", "/camera/depth/camera_info"
IMAGE_T, INFO_T = "sensor_msgs/msg/Image", "sensor_msgs/msg/CameraInfo"


def _good(store, n: int = 3, stamps=None):
    stamps = stamps or [10**9 + i * FRAME_NS for i in range(n)]
    messages = []
    for i, stamp in enumerate(stamps):
        t = 10**9 + i * FRAME_NS
        messages += [(INFO, INFO_T, t, _info(store, stamp)), (IMAGE, IMAGE_T, t, _image(store, stamp))]
    return messages


def _bad_bags(tmp_path: Path) -> dict:
    store = _store()
    vector = store.types["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)
    twist = store.types["geometry_msgs/msg/Twist"](linear=vector, angular=vector)
    return {
        "no CameraInfo": ([m for m in _good(store) if m[0] == IMAGE], f"no CameraInfo topic '{INFO}'"),
        "no depth": ([m for m in _good(store) if m[0] == INFO], f"no depth image topic '{IMAGE}'"),
        "wrong type": ([(INFO, INFO_T, 10**9, _info(store, 10**9)),
                        (IMAGE, "geometry_msgs/msg/Twist", 10**9, twist)], "is geometry_msgs/msg/Twist, not"),
        "colour": ([(INFO, INFO_T, 10**9, _info(store, 10**9)), (IMAGE, IMAGE_T, 10**9, _image(store, 10**9, "rgb8"))],
                   "is not a depth image: encoding 'rgb8'"),
        "out of order": (_good(store, stamps=[10**9, 10**9 + 2 * FRAME_NS, 10**9 + FRAME_NS]),
                         "go back in time"),
        "other size": ([(INFO, INFO_T, 10**9, _info(store, 10**9, size=(48, 64))),
                        (IMAGE, IMAGE_T, 10**9, _image(store, 10**9))], "but its CameraInfo is for 64x48"),
        "all holes": ([(INFO, INFO_T, 10**9, _info(store, 10**9)),
                       (IMAGE, IMAGE_T, 10**9, _image(store, 10**9, value=0))], "no frame holds a valid depth reading"),
    }


@pytest.mark.parametrize("case", ["no CameraInfo", "no depth", "wrong type", "colour", "out of order", "other size",
                                  "all holes"])
def test_a_bad_recording_is_refused_in_one_line_and_nothing_is_written(tmp_path, capsys, case):
    messages, expected = _bad_bags(tmp_path)[case]
    bag = write_bag(tmp_path / "bag", messages)
    out = tmp_path / "out" / "overlay.yaml"
    out.parent.mkdir()
    assert main(["calibrate", "--bag", str(bag), "--out", str(out), "--json", str(out.parent / "fit.json")]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.startswith("sim2real calibrate: ")]
    assert len(lines) == 1 and lines[0].startswith("sim2real calibrate: error: ") and expected in lines[0], err
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("compression", [None, "file", "message"])
def test_what_a_recording_does_not_show_is_kept_from_the_base_and_said(tmp_path, capsys, compression):
    """A still camera before a flat wall: no step (edge holes, shadow) and nothing near (min range).
    Compressed bags (zstd, per file or per message) read the same."""
    bag = write_bag(tmp_path / "wall", _good(_store(), n=4), compression=compression)
    out = tmp_path / "wall.yaml"
    assert main(["calibrate", "--bag", str(bag), "--out", str(out), "--json", str(tmp_path / "fit.json")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["not_observed"] == ["noise.edge_hole_prob", "noise.shadow_baseline_m", "camera.min_range_m"]
    base, fitted = load_scenario("default"), load_scenario(out)
    assert fitted.noise.edge_hole_prob == base.noise.edge_hole_prob
    assert fitted.camera.min_range_m == base.camera.min_range_m
    assert (fitted.noise.dropout, fitted.noise.stereo_sigma_per_m2, fitted.noise.max_return_m) == (0, 0, 0)


@pytest.mark.parametrize("argv, expected", [
    (["--bag", "missing"], "bag not found"),
    (["--spread", "1.5"], "--spread must be within [0, 1)"),
    (["--max-frames", "0"], "--max-frames must be at least 1"),
    (["--scenario", "nowhere"], "neither a file nor a built-in"),
])
def test_bad_arguments_are_refused(tmp_path, capsys, argv, expected):
    args = {"--bag": str(tmp_path), "--out": str(tmp_path / "o.yaml")}
    args.update(dict(zip(argv[::2], argv[1::2])))
    assert main(["calibrate", *[x for pair in args.items() for x in pair]]) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "o.yaml").exists()


# ----------------------------------------------------------------------------- overlays
def test_an_overlay_merges_over_its_base_and_chains(tmp_path):
    (tmp_path / "a.yaml").write_text("base: default\nname: a\nnoise:\n  dropout: 0.2\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yaml").write_text("base: ../a.yaml\nname: b\ncamera:\n  min_range_m: 0.3\n")
    b = load_scenario(tmp_path / "sub" / "b.yaml")
    default = load_scenario("default")
    assert (b.name, b.noise.dropout, b.camera.min_range_m) == ("b", 0.2, 0.3)
    assert b.noise.stereo_sigma_per_m2 == default.noise.stereo_sigma_per_m2 and b.arena == default.arena


@pytest.mark.parametrize("text, message", [
    ("base: loop.yaml\nname: x\n", "overlays deep"),
    ("base: 3\nname: x\n", "'base' must name a built-in scenario or a file"),
    ("base: default\nnoise:\n  dropout: 2.0\n", "invalid value for 'noise.dropout'"),
    ("base: default\nnoise:\n  holes: 1\n", "unknown key 'noise.holes'"),
])
def test_a_bad_overlay_is_refused(tmp_path, text, message):
    (tmp_path / "loop.yaml").write_text(text)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(tmp_path / "loop.yaml")
