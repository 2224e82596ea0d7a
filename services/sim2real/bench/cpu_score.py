"""A short CPU-neutral score, so figures from different machines can be compared.

Two fixed matrix products on one thread through ONNX Runtime (the engine the robot runs): 512³
float32 (``MatMul``) and 512³ u8×s8 → int32 (``MatMulInteger``, weights within 7 bits like the
exported models). Their throughputs say how fast this CPU is at the two kinds of arithmetic the
pipeline uses, independent of the model and of the rest of the machine; their ratio shows the ISA
(VNNI and AMX roughly double int8 throughput over AVX2).
"""

from __future__ import annotations

import numpy as np

SIZE = 512


def _session(op: str, a_type: int, b: np.ndarray, out_type: int):
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    graph = helper.make_graph([helper.make_node(op, ["a", "b"], ["y"])], "score",
                              [helper.make_tensor_value_info("a", a_type, [SIZE, SIZE])],
                              [helper.make_tensor_value_info("y", out_type, [SIZE, SIZE])],
                              initializer=[numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def cpu_score(repeats: int = 20) -> dict:
    """Single-thread float32 GFLOP/s and int8 GOP/s of a 512³ matrix product (best of ``repeats``)."""
    import time

    from onnx import TensorProto

    rng = np.random.default_rng(0)
    cases = {
        "fp32_gflops": (_session("MatMul", TensorProto.FLOAT, rng.standard_normal((SIZE, SIZE), dtype=np.float32),
                                 TensorProto.FLOAT), rng.standard_normal((SIZE, SIZE), dtype=np.float32)),
        "int8_gops": (_session("MatMulInteger", TensorProto.UINT8,
                               rng.integers(-63, 64, (SIZE, SIZE)).astype(np.int8), TensorProto.INT32),
                      rng.integers(0, 256, (SIZE, SIZE)).astype(np.uint8)),
    }
    out = {}
    for key, (session, a) in cases.items():
        session.run(None, {"a": a})
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            session.run(None, {"a": a})
            best = min(best, time.perf_counter() - start)
        out[key] = round(2 * SIZE ** 3 / best / 1e9, 1)
    out["int8_over_fp32"] = round(out["int8_gops"] / out["fp32_gflops"], 2)
    out["what"] = f"{SIZE}x{SIZE}x{SIZE} matrix product, 1 thread, ONNX Runtime, best of {repeats}"
    return out
