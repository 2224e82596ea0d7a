"""A deployed model as a policy: depth in metres → action, with the manifest's preprocessing.

This is what the ROS 2 node and the evaluator both run, so what is evaluated is what ships.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from sim2real.contracts.actions import ACTIONS
from sim2real.contracts.manifest import read_manifest
from sim2real.contracts.preprocessing import PreprocessSpec, preprocess
from sim2real.runtime import engines


class ModelPolicy:
    """Load a model and its manifest; ``act`` maps one depth image to an action index."""

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
