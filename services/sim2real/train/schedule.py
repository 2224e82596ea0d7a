"""When training stops and how fast it learns meanwhile: the plateau learning-rate schedule and
early stopping on the validation loss (both saved in ``last.pt``, so a resumed run decides alike)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

MIN_IMPROVEMENT = 1e-3        # a validation loss counts as better when lower by this share
PLATEAU_FACTOR = 0.1          # the plateau schedule's cut


class PlateauLR(torch.optim.lr_scheduler.LRScheduler):
    """Linear warm-up over ``warmup_steps``, then the base rate, times ``scale`` (``cut`` divides it by 10)."""

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_steps: int):
        self.warmup_steps = max(1, warmup_steps)
        self.scale = 1.0
        super().__init__(optimizer)

    def get_lr(self) -> list[float]:
        warm = min(1.0, (self.last_epoch + 1) / self.warmup_steps)
        return [base * warm * self.scale for base in self.base_lrs]

    def cut(self) -> None:
        self.scale *= PLATEAU_FACTOR


@dataclass
class Stopper:
    """Early stopping on the validation loss (and the plateau schedule's cuts); saved in ``last.pt``."""

    patience: int
    cuts_allowed: int = 0
    best_loss: float = math.inf
    best_epoch: int = 0
    bad: int = 0
    cuts: int = 0

    def update(self, epoch: int, loss: float) -> str:
        """``best``, ``wait``, ``cut`` (lower the rate and go on) or ``stop`` after this epoch's loss."""
        if loss < self.best_loss * (1.0 - MIN_IMPROVEMENT):
            self.best_loss, self.best_epoch, self.bad = loss, epoch, 0
            return "best"
        self.bad += 1
        if self.bad < self.patience:
            return "wait"
        if self.cuts < self.cuts_allowed:
            self.cuts, self.bad = self.cuts + 1, 0
            return "cut"
        return "stop"

    def state(self) -> dict:
        return {"best_loss": self.best_loss, "best_epoch": self.best_epoch, "bad": self.bad, "cuts": self.cuts}
