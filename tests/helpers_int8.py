"""INT8 probes for the ISA tests: a QDQ convolution that saturates U8S8 kernels, and a runner that
executes Python on an emulated AVX2-only CPU (``qemu-x86_64 -cpu max``: QEMU's TCG has AVX2 but no
AVX-512 and no VNNI), so both integer-kernel classes are exercised on any x86 machine.

Run as a script (``python helpers_int8.py [MODEL_DIR]``) it prints one JSON line: this process's
ISA class, the saturation probe at 8-bit and 7-bit weights, and, with a model folder, the top-1
agreement of the ONNX Runtime INT8 model's local kernels with its fake-quantized graph on the held-out inputs
saved in ``MODEL_DIR/held_out.npy``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

QEMU = "qemu-x86_64"


def saturating_conv(weight: int, channels: int = 16) -> bytes:
    """A QDQ 3×3 convolution, u8 activations (scale 1/255) and s8 weights all equal to ``weight``.

    With every input at 1.0 (u8 255), a pair of products is 255·weight·2: at weight 127 that is
    64770, beyond the 16-bit lane of ``VPMADDUBSW``; at 63 (7-bit weights) it is 32130, within it.
    The centre output is ``channels · 9 · weight / 127`` exactly when nothing saturates.
    """
    from onnx import TensorProto, helper, numpy_helper

    out_scale = channels * 9 / 255 * 1.01
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["y", "ys", "yz"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["out"])]
    initializers = [numpy_helper.from_array(np.array(1 / 255, np.float32), "xs"),
                    numpy_helper.from_array(np.array(0, np.uint8), "xz"),
                    numpy_helper.from_array(np.full((4, channels, 3, 3), weight, np.int8), "w"),
                    numpy_helper.from_array(np.full(4, 1 / 127, np.float32), "ws"),
                    numpy_helper.from_array(np.zeros(4, np.int8), "wz"),
                    numpy_helper.from_array(np.array(out_scale, np.float32), "ys"),
                    numpy_helper.from_array(np.array(0, np.uint8), "yz")]
    graph = helper.make_graph(nodes, "saturating_conv",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, channels, 6, 6])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 6, 6])],
                              initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _session(model, fake_quant: bool):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    if fake_quant:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


def saturation_probe(weight: int) -> dict:
    """Centre output of :func:`saturating_conv` from local kernels and from the fake-quantized graph."""
    model = saturating_conv(weight)
    x = np.ones((1, 16, 6, 6), np.float32)
    local, fake = (float(_session(model, f).run(None, {"x": x})[0][0, 0, 3, 3]) for f in (False, True))
    return {"local": local, "fake_quant": fake, "exact": 16 * 9 * weight / 127}


def model_agreement(folder: Path) -> dict:
    """``model.int8.onnx`` in ``folder``, local kernels against its fake-quantized graph on the
    held-out inputs: top-1 agreement and the largest logit difference."""
    x = np.load(folder / "held_out.npy")
    path = folder / "model.int8.onnx"
    local, fake = (_session(path, f).run(None, {"depth": x})[0] for f in (False, True))
    return {"top1_agreement": float((local.argmax(1) == fake.argmax(1)).mean()),
            "max_abs_diff": float(np.abs(local - fake).max()), "logit_range": float(np.ptp(fake))}


def run_on_emulated_avx2(*args: str, timeout: float = 900) -> dict:
    """Run this file under ``qemu-x86_64 -cpu max`` and return its JSON line."""
    qemu = shutil.which(QEMU)
    if qemu is None:
        raise RuntimeError(f"{QEMU} is not installed: make test installs it (scripts/install-system-deps.sh)")
    # The ROS wheels' bootstrap re-executes Python to set LD_LIBRARY_PATH; a re-exec would leave the
    # emulator and run natively, so it is marked as done (nothing here needs the ROS libraries).
    env = {**os.environ, "_ROS_WHEELS_BOOTSTRAP_COMPLETE": "1", "OMP_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1"}
    env.pop("SIM2REAL_ISA", None)
    proc = subprocess.run([qemu, "-cpu", "max", sys.executable, __file__, *args], capture_output=True, text=True,
                          env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"emulated run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> None:
    from sim2real import machine

    report = {"isa": machine.isa(), "full_range": saturation_probe(127), "seven_bit": saturation_probe(63)}
    if argv:
        report["model"] = model_agreement(Path(argv[0]))
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1:])
