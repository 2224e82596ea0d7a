"""What a run reports: the confusion matrix and its summary, the PNG, TensorBoard scalars."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sim2real.contracts.actions import ACTIONS
from sim2real.contracts.manifest import atomic_path

METRICS = "metrics.json"
CONFUSION_PNG = "confusion_matrix.png"
TENSORBOARD = "tensorboard"


def predict(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
            device: torch.device | None = None) -> tuple[np.ndarray, float]:
    """(predicted classes, summed unweighted cross-entropy) of ``model`` in evaluation mode on a set."""
    model.eval()
    preds, loss = [], 0.0
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size].to(device or "cpu").contiguous(memory_format=torch.channels_last)
            logits = model(batch)
            loss += float(nn.functional.cross_entropy(logits.float(), y[start:start + batch_size].to(logits.device),
                                                      reduction="sum"))
            preds.append(logits.argmax(1).cpu())
    return (torch.cat(preds).numpy() if preds else np.zeros(0, np.int64)), loss


def matrix_of(y: np.ndarray, pred: np.ndarray, num_classes: int = len(ACTIONS)) -> np.ndarray:
    """Confusion matrix (rows: true class, columns: predicted)."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (np.asarray(y), np.asarray(pred)), 1)
    return matrix


def summarise(matrix: np.ndarray) -> dict:
    """Accuracy, per-class accuracy (recall; None for an absent class) and the matrix itself."""
    per_class = {name: (float(matrix[i, i] / matrix[i].sum()) if matrix[i].sum() else None)
                 for i, name in enumerate(ACTIONS)}
    return {"val_accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
            "per_class_accuracy": per_class, "confusion_matrix": matrix.tolist()}



def plot_confusion(matrix: np.ndarray, path: Path, title: str) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(4.2, 3.6), dpi=120)
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    for (row, col), value in np.ndenumerate(matrix):
        ax.text(col, row, str(value), ha="center", va="center",
                color="white" if value > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(ACTIONS)), ACTIONS)
    ax.set_yticks(range(len(ACTIONS)), ACTIONS)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")


_TENSORBOARD_MISSING_SAID = False


def summary_writer(log_dir: Path, purge_step: int | None = None) -> Any | None:
    """A TensorBoard SummaryWriter, or None (said once per process) when tensorboard is missing."""
    global _TENSORBOARD_MISSING_SAID
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if not _TENSORBOARD_MISSING_SAID:
            _TENSORBOARD_MISSING_SAID = True
            print("sim2real train: the tensorboard package is not installed, so no TensorBoard scalars are "
                  "written (pip install tensorboard); training continues", file=sys.stderr)
        return None
    return SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)


def log_epoch(writer: Any, step: int, epoch: int, loss: float, accuracy: float, summary: dict,
              images_per_second: float) -> None:
    """One epoch's scalars, by global step."""
    writer.add_scalar("epoch", epoch, step)
    writer.add_scalar("train/loss", loss, step)
    writer.add_scalar("train/accuracy", accuracy, step)
    writer.add_scalar("train/images_per_second", images_per_second, step)
    writer.add_scalar("val/accuracy", summary["val_accuracy"], step)
    if "val_loss" in summary:
        writer.add_scalar("val/loss", summary["val_loss"], step)
    for name, value in summary["per_class_accuracy"].items():
        if value is not None:
            writer.add_scalar(f"val/accuracy_{name}", value, step)
    writer.flush()
