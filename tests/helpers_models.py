"""Tiny models and depth images for runtime tests (no torch).

The tiny ONNX model is Flatten → Gemm on the preprocessed input x in [0, 1] (near → 0, far → 1),
with L and R the mean of the left and right half of x:

    forward = L + R - 1,   left = L - R,   right = R - L

so an open view gives ``forward``, an obstacle on the left (small L) gives ``right``, an obstacle on
the right gives ``left``. A term ``0 * log(mean(x))`` is added to every logit: zero for any real
view, NaN when the whole image is at or below the minimum range (``touching``), which exercises
the node's handling of a model that returns garbage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from sim2real.contracts import actions
from sim2real.contracts.manifest import new_manifest, write_manifest
from sim2real.contracts.preprocessing import PreprocessSpec

TINY_SIZE = 32


def tiny_model(folder: Path, size: int = TINY_SIZE, name: str = "tiny.onnx", max_range_m: float = 5.0,
               nan_logits: bool = False, forward_bias: float = -1.0) -> Path:
    """Write the tiny left/right model and its manifest into ``folder``; return the model path.

    ``max_range_m`` is the manifest's far limit; ``forward_bias`` replaces the -1 of ``forward``
    (closer to 0: it drives more and turns only when the view is near); ``nan_logits`` makes every
    output NaN (a broken model).
    """
    n = size * size
    half = np.zeros((size, size), np.float32)
    half[:, : size // 2] = 1.0
    left_px = half.reshape(-1)
    right_px = 1.0 - left_px
    scale = 2.0 / n
    weight = np.stack([scale * np.ones(n), scale * (left_px - right_px), scale * (right_px - left_px)], axis=1)
    bias = np.array([np.nan] * 3 if nan_logits else [forward_bias, 0.0, 0.0], np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["input"], ["flat"], axis=1),
         helper.make_node("Gemm", ["flat", "W", "b"], ["linear"]),
         helper.make_node("ReduceMean", ["input"], ["mean"], axes=[2, 3], keepdims=0),
         helper.make_node("Log", ["mean"], ["log_mean"]),
         helper.make_node("Mul", ["log_mean", "zero"], ["guard"]),
         helper.make_node("Add", ["linear", "guard"], ["logits"])],
        "tiny_left_right",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(actions.ACTIONS)])],
        initializer=[numpy_helper.from_array(weight.astype(np.float32), "W"), numpy_helper.from_array(bias, "b"),
                     numpy_helper.from_array(np.zeros((), np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    onnx.save(model, str(path))
    spec = PreprocessSpec(size=size, max_range_m=max_range_m)
    write_manifest(path, new_manifest("onnx-model", preprocessing=spec.to_dict(), actions=actions.spec(),
                                      precision="fp32"))
    return path


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
