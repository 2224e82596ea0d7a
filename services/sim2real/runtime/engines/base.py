"""The inference engine interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class Engine(ABC):
    """One loaded model. ``input_shape`` / ``output_shape`` are the graph's (None or a name for an
    open dimension); ``contract`` is the model contract the file itself carries (JSON text or a
    dict), or None where it carries none."""

    name: str = ""
    input_shape: tuple | None = None
    output_shape: tuple | None = None
    contract: str | dict | None = None

    def __init__(self, model_path: Path):
        if not model_path.exists():
            raise FileNotFoundError(f"model not found: {model_path}")
        self.model_path = model_path

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, C, H, W) float32 → (N, len(ACTIONS)) float32 logits."""
