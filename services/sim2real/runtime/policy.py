"""A deployed model as a policy: depth in metres (and the camera's intrinsics) → action.

This is what the ROS 2 node, ``replay`` and the evaluator all run, so what is evaluated is what ships.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sim2real import machine
from sim2real.contracts import model_contract
from sim2real.contracts.actions import choose
from sim2real.contracts.camera import Intrinsics
from sim2real.contracts.manifest import read_manifest
from sim2real.contracts.preprocessing import InputMapping, input_mapping
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
    """Load a model, check it against its contract, and map depth images to logits.

    Loading checks the model (``contracts.model_contract.verify``): the manifest's preprocessing,
    camera and actions must equal the contract inside the model file, the graph's input and output
    must fit them, and one probe image must give one logit per action. Any mismatch is a one-line
    ``ModelContractError``.

    ``logits(depth_m, intrinsics)`` maps the image onto the trained field of view through the
    camera's intrinsics (None: the trained horizontal field of view, centred, square pixels) and
    runs the engine; ``mapping(intrinsics)`` is that mapping, with its coverage and its check.
    ``isa_note`` is a line to log once when the model's INT8 kernels were measured on another x86
    ISA class (see :func:`isa_note`), else None.
    """

    def __init__(self, model_path: str | Path, backend: str = "auto"):
        self.model_path = Path(model_path)
        if not self.model_path.exists():
            raise FileNotFoundError(f"model not found: {self.model_path}")
        self.manifest = read_manifest(self.model_path)
        self.spec, self.camera = model_contract.read_blocks(self.manifest, self.model_path)
        self.hysteresis = model_contract.runtime_params(self.manifest, self.model_path)
        self.sha256 = self.manifest["sha256"]
        self.engine = engines.create(backend, self.model_path)
        model_contract.verify(self.model_path, self.manifest, self.engine.contract, self.engine.input_shape,
                              self.engine.output_shape)
        probe = np.asarray(self.engine.infer(np.zeros((1, *self.spec.input_shape()), np.float32)))
        model_contract.check_probe(self.model_path, probe.shape)
        self.isa_note = isa_note(self.manifest, self.model_path) if self.engine.name == "onnxruntime" else None
        self.last_timing_ms: dict[str, float] = {}
        self.last_no_return = 0.0

    def mapping(self, intrinsics: Intrinsics | None, width: int | None = None,
                height: int | None = None) -> InputMapping:
        """How images of ``intrinsics`` (or, without, of ``width`` x ``height`` pixels) reach this model."""
        if intrinsics is None:
            intrinsics = self.camera.assumed_intrinsics(width, height)
        return input_mapping(self.spec, self.camera, intrinsics)

    def input_tensor(self, depth_m: np.ndarray, intrinsics: Intrinsics | None = None) -> np.ndarray:
        """The model input ``(1, 2, H, W)`` for one depth image in metres (no coverage check)."""
        depth = np.asarray(depth_m)
        if depth.ndim != 2:
            raise ValueError(f"depth image must be 2-D (H, W), got shape {depth.shape}")
        x, self.last_no_return = self.mapping(intrinsics, depth.shape[1], depth.shape[0])(depth)
        return x[None]

    def infer(self, x: np.ndarray) -> np.ndarray:
        """Logits ``(len(ACTIONS),)`` of one model input ``(1, 2, H, W)``."""
        return self.engine.infer(x)[0]

    def logits(self, depth_m: np.ndarray, intrinsics: Intrinsics | None = None) -> np.ndarray:
        t0 = time.perf_counter()
        x = self.input_tensor(depth_m, intrinsics)
        t1 = time.perf_counter()
        out = self.infer(x)
        t2 = time.perf_counter()
        self.last_timing_ms = {"preprocess": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3}
        return out

    def act(self, depth_m: np.ndarray, intrinsics: Intrinsics | None = None) -> int:
        return choose(self.logits(depth_m, intrinsics))[0]
