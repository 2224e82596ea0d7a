"""Tiny models and depth images for runtime tests (no torch).

The tiny ONNX model reads the depth channel ``d`` of the preprocessed input (near → 0, far → 1;
0 where there is no data) through Flatten → Gemm, with L and R the mean of its left and right half:

    forward = L + R - 1,   left = L - R,   right = R - L

so an open view gives ``forward``, an obstacle on the left (small L) gives ``right``, an obstacle on
the right gives ``left``. A term ``0 * log(mean(d))`` is added to every logit: zero for any real
view, NaN when the whole view is at or below the minimum range (``touching``), which exercises
the node's handling of a model that returns garbage. It is exported as ``sim2real export`` does:
wrapped to be exactly mirror-equivariant, with its contract in the file's metadata.

Its camera contract is 87° wide and 4:3 (the test images' shape), input ``size`` x ``size * 3/4``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sim2real.contracts import actions, model_contract
from sim2real.contracts.hysteresis import OFF, HysteresisParams
from sim2real.contracts.camera import CameraContract
from sim2real.contracts.manifest import new_manifest, write_manifest
from sim2real.contracts.preprocessing import PreprocessSpec
from sim2real.export.equivariance import embed_contract, mirror_equivariant

TINY_SIZE = 32


def tiny_contract(size: int = TINY_SIZE, max_range_m: float = 5.0) -> tuple[PreprocessSpec, CameraContract]:
    height = size * 3 // 4
    return (PreprocessSpec(width=size, height=height, max_range_m=max_range_m),
            CameraContract.for_camera(size, height, 87.0, "tiny 4:3"))


def tiny_network(width: int, height: int, nan_logits: bool = False, forward_bias: float = -1.0) -> onnx.ModelProto:
    """The left/right network ``f`` over a (N, 2, height, width) input, before the mirror wrapping."""
    n = height * width
    half = np.zeros((height, width), np.float32)
    half[:, : width // 2] = 1.0
    left_px = half.reshape(-1)
    right_px = 1.0 - left_px
    scale = 2.0 / n
    depth_weights = np.stack([scale * np.ones(n), scale * (left_px - right_px), scale * (right_px - left_px)], axis=1)
    weight = np.concatenate([depth_weights, np.zeros_like(depth_weights)]).astype(np.float32)   # validity: 0
    bias = np.array([np.nan] * 3 if nan_logits else [forward_bias, 0.0, 0.0], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "W", "b"], ["linear"]),
         helper.make_node("Slice", ["input", "zero_i", "one_i", "one_i"], ["depth"]),
         helper.make_node("ReduceMean", ["depth"], ["mean"], axes=[1, 2, 3], keepdims=0),
         helper.make_node("Unsqueeze", ["mean", "one_i"], ["mean_col"]),
         helper.make_node("Log", ["mean_col"], ["log_mean"]),
         helper.make_node("Mul", ["log_mean", "zero"], ["guard"]),
         helper.make_node("Add", ["linear", "guard"], ["logits"])],
        "tiny_left_right",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 2, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(actions.ACTIONS)])],
        initializer=[numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b"),
                     numpy_helper.from_array(np.zeros((), np.float32), "zero"),
                     numpy_helper.from_array(np.array([0], np.int64), "zero_i"),
                     numpy_helper.from_array(np.array([1], np.int64), "one_i")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def tiny_model(folder: Path, size: int = TINY_SIZE, name: str = "tiny.onnx", max_range_m: float = 5.0,
               nan_logits: bool = False, forward_bias: float = -1.0, runtime: HysteresisParams = OFF) -> Path:
    """Write the tiny left/right model and its manifest into ``folder``; return the model path.

    ``max_range_m`` is the contract's far limit; ``forward_bias`` replaces the -1 of ``forward``
    (closer to 0: it drives more and turns only when the view is near); ``nan_logits`` makes every
    output NaN (a broken model). ``runtime`` is the turn hysteresis it carries (off: one image, one
    answer, as the tests of the stateless pipeline expect).
    """
    spec, camera = tiny_contract(size, max_range_m)
    contract = model_contract.build(spec, camera, "input", "logits", runtime)
    model = embed_contract(mirror_equivariant(tiny_network(spec.width, spec.height, nan_logits, forward_bias)),
                           contract)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    onnx.save(model, str(path))
    write_manifest(path, new_manifest("onnx-model", precision="fp32",
                                      **model_contract.manifest_blocks(contract)))
    return path


def contract_model(folder: Path, spec: PreprocessSpec, camera: CameraContract, name: str = "model.onnx",
                   runtime: HysteresisParams = OFF) -> Path:
    """The tiny left/right network exported for any contract (e.g. the default scenario's D435)."""
    contract = model_contract.build(spec, camera, "input", "logits", runtime)
    model = embed_contract(mirror_equivariant(tiny_network(spec.width, spec.height)), contract)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    onnx.save(model, str(path))
    write_manifest(path, new_manifest("onnx-model", precision="fp32",
                                      **model_contract.manifest_blocks(contract)))
    return path


def camera_info(intrinsics, binning: int = 0, roi=None):
    """A sensor_msgs/CameraInfo-like message for ``intrinsics`` (what a driver publishes)."""
    from types import SimpleNamespace

    c = intrinsics
    return SimpleNamespace(width=c.width, height=c.height, k=[c.fx, 0.0, c.cx, 0.0, c.fy, c.cy, 0.0, 0.0, 1.0],
                           binning_x=binning, binning_y=binning, roi=roi)


def depth_scene(kind: str, height: int = 48, width: int = 64, near: float = 0.4, far: float = 4.0) -> np.ndarray:
    """Depth in metres: ``open``, ``obstacle_left``, ``obstacle_right``, ``invalid`` or ``touching``."""
    depth = np.full((height, width), far, np.float32)
    if kind == "obstacle_left":
        depth[:, : width // 2] = near
    elif kind == "obstacle_right":
        depth[:, width // 2:] = near
    elif kind == "invalid":
        depth[:] = np.nan
    elif kind == "touching":
        depth[:] = 0.05
    elif kind != "open":
        raise ValueError(f"unknown scene '{kind}'")
    return depth


EXPECTED_ACTION = {"open": actions.FORWARD, "obstacle_left": actions.RIGHT, "obstacle_right": actions.LEFT}
