"""A deployed model as a policy: depth in metres → action, with the manifest's preprocessing.

This is what the ROS 2 node and the evaluator both run, so what is evaluated is what ships.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sim2real import machine
from sim2real.contracts.actions import ACTIONS
from sim2real.contracts.manifest import read_manifest
from sim2real.contracts.preprocessing import PreprocessSpec, preprocess
from sim2real.runtime import engines


def isa_note(manifest: dict, model_path: str | Path, running: str | None = None) -> str | None:
    """One line when the model's INT8 kernels were measured on another x86 ISA class than this CPU's.

    None when they match, for FP32 models, and on ARM (where the figure always comes from another
    machine; what counts there is the TensorRT or ARM build). The export's gate figure is the
    quantized graph's own and holds on every CPU; the local-kernel figure is this note's subject.
    """
    local = manifest.get("local_kernels")
    running = running or machine.isa()
    if not isinstance(local, dict) or not machine.is_x86(running) or not machine.is_x86(str(local.get("isa"))):
        return None
    if local["isa"] == running:
        return None
    gate = (manifest.get("int8_agreement") or {}).get("top1_agreement")
    return (f"{Path(model_path).name}: its INT8 kernels were measured on {local['isa']} (top-1 agreement with "
            f"FP32 {local.get('top1_agreement')}); this CPU is {running}, whose ONNX Runtime kernels differ "
            f"({machine.int8_kernel_class(running)}); the quantized graph's own agreement, {gate}, holds on every CPU")


class ModelPolicy:
    """Load a model and its manifest; ``act`` maps one depth image to an action index.

    ``isa_note`` is a line to log once when the model's INT8 kernels were measured on another x86
    ISA class (see :func:`isa_note`), else None.
    """

    def __init__(self, model_path: str | Path, backend: str = "auto"):
        self.model_path = Path(model_path)
        if not self.model_path.exists():
            raise FileNotFoundError(f"model not found: {self.model_path}")
        self.manifest = read_manifest(self.model_path)
        actions = self.manifest.get("actions", {}).get("actions")
        if actions != list(ACTIONS):
            raise ValueError(f"{self.model_path}: model actions {actions} differ from this runtime's {list(ACTIONS)}")
        self.spec = PreprocessSpec.from_dict(self.manifest["preprocessing"])
        self.sha256 = self.manifest["sha256"]
        self.engine = engines.create(backend, self.model_path)
        self.isa_note = isa_note(self.manifest, self.model_path) if self.engine.name == "onnxruntime" else None
        self.last_timing_ms: dict[str, float] = {}

    def logits(self, depth_m: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        x = preprocess(depth_m, self.spec)[None, None]
        t1 = time.perf_counter()
        out = self.engine.infer(x)[0]
        t2 = time.perf_counter()
        self.last_timing_ms = {"preprocess": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3}
        return out

    def act(self, depth_m: np.ndarray) -> int:
        return int(np.argmax(self.logits(depth_m)))
