"""ONNX Runtime on the CPU (and the CUDA / TensorRT execution providers where installed)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sim2real.contracts.model_contract import METADATA_KEY
from sim2real.runtime.engines.base import Engine

_PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, model_path: Path, threads: int | None = None):
        super().__init__(model_path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or int(os.environ.get("SIM2REAL_ORT_THREADS", "0"))
        options.inter_op_num_threads = 1
        # Idle pool threads sleep instead of spin-waiting: at batch 1 on a shared CPU, spinning threads
        # took the cores the next operator needed (2 threads: p50 26.6 ms spinning, 11.2 ms not; AVX2).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        available = ort.get_available_providers()
        providers = [p for p in _PREFERRED if p in available]
        try:
            self.session = ort.InferenceSession(str(model_path), options, providers=providers)
        except Exception as exc:
            raise ValueError(f"{model_path} is not a loadable ONNX model: {str(exc).splitlines()[0]}") from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ValueError(f"{model_path.name}: a policy model has one input and one output, this one has "
                             f"{len(inputs)} input(s) {[i.name for i in inputs]} and {len(outputs)} output(s) "
                             f"{[o.name for o in outputs]}")
        self.input_name, self.output_name = inputs[0].name, outputs[0].name
        self.input_shape, self.output_shape = tuple(inputs[0].shape), tuple(outputs[0].shape)
        self.contract = self.session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        self.providers = self.session.get_providers()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(batch, np.float32)})[0]
