"""What exact mirror equivariance costs: the network alone against the exported mirror-equivariant graph.

For each input shape, the project's ResNet18 (two input channels, random weights: latency does
not depend on them) is exported as ``f`` and as the graph ``export`` ships
(``0.5 * (f(x) + swap(f(flip(x))))``, ``f`` run once on a batch of two), in FP32 and in the ONNX
Runtime INT8 form (calibrated on random inputs), and each is timed at batch 1 on ONNX Runtime
with the runtime's engine settings. Run alone: ``python -m sim2real.bench.mirror_cost``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

from sim2real.bench.stats import time_calls

SHAPES = ((96, 96), (224, 224), (128, 72), (224, 126))   # (width, height): the old squares, the new 16:9 inputs


def _models(work: Path, width: int, height: int) -> dict[str, Path]:
    """``f`` and its mirror-equivariant wrapping, FP32 and INT8 (ORT form), under ``work``."""
    import onnx
    import torch
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from sim2real.export.equivariance import mirror_equivariant
    from sim2real.train.model import build_model

    model = build_model("resnet18").eval()
    core = work / f"core-{width}x{height}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 2, height, width),), str(core), dynamo=False, opset_version=17,
                          input_names=["depth"], output_names=["logits"],
                          dynamic_axes={"depth": {0: "batch"}, "logits": {0: "batch"}})
    prepared, int8 = work / f"prep-{width}x{height}.onnx", work / f"int8-{width}x{height}.onnx"
    quant_pre_process(core, prepared)
    calibration = np.random.default_rng(0).random((16, 2, height, width), dtype=np.float32)

    class Reader:
        batches = iter([{"depth": calibration[i:i + 8]} for i in (0, 8)])

        def get_next(self):
            return next(self.batches, None)

    with contextlib.redirect_stdout(io.StringIO()):
        quantize_static(prepared, int8, Reader(), quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.Percentile)
    paths = {"fp32": core, "int8": int8}
    for name in ("fp32", "int8"):
        mirrored = work / f"mirror-{name}-{width}x{height}.onnx"
        onnx.save(mirror_equivariant(onnx.load(str(paths[name]))), str(mirrored))
        paths[f"{name}_mirror"] = mirrored
    return paths


def bench_mirror_cost(repeats: int = 200, shapes=SHAPES) -> dict:
    """p50/p99 ms per shape: ``{"WxH": {"fp32": {...}, "fp32_mirror": {...}, "int8": ..., "int8_mirror": ...,
    "cost_p50": {"fp32": ratio, "int8": ratio}}}``."""
    from sim2real.runtime.engines.onnxruntime_engine import OnnxRuntimeEngine

    out = {}
    with tempfile.TemporaryDirectory(prefix="sim2real-mirror-cost-") as tmp:
        for width, height in shapes:
            paths = _models(Path(tmp), width, height)
            x = np.random.default_rng(1).random((1, 2, height, width), dtype=np.float32)
            figures = {}
            for name, path in paths.items():
                engine = OnnxRuntimeEngine(path)
                figures[name] = time_calls(lambda: engine.infer(x), repeats)
            figures["cost_p50"] = {p: round(figures[f"{p}_mirror"]["p50"] / figures[p]["p50"], 2)
                                   for p in ("fp32", "int8")}
            out[f"{width}x{height}"] = figures
    return out


def format_rows(results: dict) -> list[str]:
    lines = [f"{'mirror equivariance, batch 1':<34}{'f p50':>9}{'g p50':>9}{'f p99':>9}{'g p99':>9}"]
    for shape, figures in results.items():
        for precision in ("fp32", "int8"):
            plain, mirrored = figures[precision], figures[f"{precision}_mirror"]
            lines.append(f"  {shape + ' ' + precision:<32}{plain['p50']:>9.2f}{mirrored['p50']:>9.2f}"
                         f"{plain['p99']:>9.2f}{mirrored['p99']:>9.2f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    from sim2real import machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    results = bench_mirror_cost(args.repeats)
    print("\n".join([f"machine: {machine.label()}", *format_rows(results)]))
    print(json.dumps({"machine": machine.label(), "mirror_cost_ms": results}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
