"""The inference engine interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np


class Engine(ABC):
    name: str = ""

    def __init__(self, model_path: Path):
        if not model_path.exists():
            raise FileNotFoundError(f"model not found: {model_path}")
        self.model_path = model_path

    @abstractmethod
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """(N, 1, S, S) float32 → (N, len(ACTIONS)) float32 logits."""
