"""Inference engines by name. Each loads the file made for it and runs a (N, 1, S, S) float32 batch.

``auto`` picks the first available in order of preference: TensorRT (on a GPU with an engine
file), then ONNX Runtime. Callers never branch on which engine is in use.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from sim2real.runtime.engines.base import Engine

_ENGINES = {
    "onnxruntime": ("sim2real.runtime.engines.onnxruntime_engine", "OnnxRuntimeEngine"),
    "tensorrt": ("sim2real.runtime.engines.tensorrt_engine", "TensorRTEngine"),
}


def names() -> list[str]:
    return sorted(_ENGINES)


def _load_class(name: str) -> type[Engine]:
    module, cls = _ENGINES[name]
    return getattr(importlib.import_module(module), cls)


def create(name: str, model_path: str | Path) -> Engine:
    """An engine by name (or ``auto``) for ``model_path``."""
    path = Path(model_path)
    if name == "auto":
        name = "tensorrt" if path.suffix == ".engine" else "onnxruntime"
    if name not in _ENGINES:
        raise ValueError(f"unknown inference backend '{name}' (known: auto, {', '.join(names())})")
    try:
        engine_cls = _load_class(name)
    except ImportError as exc:
        raise RuntimeError(f"inference backend '{name}' is not installed here ({exc.name} missing)") from None
    return engine_cls(path)
