"""Train the policy on a datagen dataset: deterministic, class-balanced, mirrored-augmented.

``train(data, out, config)`` writes into ``out``::

    checkpoint.pt                 {"state_dict", "meta"} (tensors and primitives: weights_only loads)
    checkpoint.pt.manifest.json   sha256, dataset/scenario inputs, preprocessing, actions, metrics
    metrics.json                  validation accuracy, per-class accuracy, confusion matrix, history
    confusion_matrix.png

Every file is written atomically and the checkpoint last, so a crash never leaves a checkpoint
that looks complete. The preprocessing is ``contracts.preprocessing``, called on every image.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from sim2real.contracts import actions
from sim2real.contracts.actions import ACTIONS, LEFT, RIGHT
from sim2real.contracts.dataset import Dataset
from sim2real.contracts.manifest import atomic_path, new_manifest, read_manifest, write_json_atomic, write_manifest
from sim2real.contracts.preprocessing import PreprocessSpec, depth_from_millimetres, preprocess_batch
from sim2real.train.model import arch_names, build_model

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.json"
CONFUSION_PNG = "confusion_matrix.png"
_CHUNK = 256
_BN_SAMPLES = 4096


@dataclass
class TrainConfig:
    """Training hyper-parameters; recorded verbatim in the checkpoint manifest."""

    epochs: int = 6
    batch_size: int = 64
    lr: float = 2e-3
    input_size: int = 96
    seed: int = 0
    val_fraction: float = 0.1
    arch: str = "resnet18"
    threads: int | None = None

    def validate(self) -> None:
        """Raise a one-line ValueError for a setting that cannot train."""
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise ValueError(f"epochs must be an integer ≥ 1, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 2:
            raise ValueError(f"batch_size must be an integer ≥ 2, got {self.batch_size!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if not isinstance(self.input_size, int) or self.input_size < 16:
            raise ValueError(f"input_size must be an integer ≥ 16, got {self.input_size!r}")
        if not (0.0 < self.val_fraction < 1.0):
            raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {self.val_fraction!r}")
        if self.arch not in arch_names():
            raise ValueError(f"unknown arch '{self.arch}' (known: {', '.join(arch_names())})")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be None or an integer ≥ 1, got {self.threads!r}")


def split_indices(count: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, val) index split; the exporter reuses it to find held-out images."""
    n_val = int(round(count * val_fraction))
    if n_val < 1 or count - n_val < 2:
        raise ValueError(f"{count} images cannot be split into ≥ 2 training and ≥ 1 validation images "
                         f"with val_fraction={val_fraction}")
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def preprocess_millimetres(depth_mm: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """(N, H, W) uint16 millimetres → (N, 1, S, S) float32 via the contract, in bounded chunks."""
    out = np.empty((len(depth_mm), 1, spec.size, spec.size), np.float32)
    for start in range(0, len(depth_mm), _CHUNK):
        chunk = depth_mm[start:start + _CHUNK]
        out[start:start + len(chunk)] = preprocess_batch(depth_from_millimetres(chunk), spec)
    return out


def spec_for(dataset: Dataset, input_size: int) -> PreprocessSpec:
    """The preprocessing for a dataset: its camera's range, the model's input size."""
    camera = dataset.manifest.get("camera") or {}
    try:
        return PreprocessSpec.from_dict({"size": input_size, "min_range_m": float(camera["min_range_m"]),
                                         "max_range_m": float(camera["max_range_m"])})
    except KeyError as exc:
        raise ValueError(f"{dataset.root}: dataset manifest camera has no {exc.args[0]}") from None


def mirror(x: torch.Tensor, y: torch.Tensor, flip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror the samples where ``flip`` is set; a mirrored scene swaps left and right turns."""
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    swapped = torch.where(y == LEFT, RIGHT, torch.where(y == RIGHT, LEFT, y))
    return x, torch.where(flip, swapped, y)


def class_weights(labels: np.ndarray, num_classes: int = len(ACTIONS)) -> torch.Tensor:
    """Inverse-frequency weights for the label mix seen after mirroring (left and right pooled)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    counts[LEFT] = counts[RIGHT] = (counts[LEFT] + counts[RIGHT]) / 2
    weights = np.where(counts > 0, counts.sum() / (num_classes * np.maximum(counts, 1)), 0.0)
    return torch.tensor(weights, dtype=torch.float32)


def confusion(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
              num_classes: int = len(ACTIONS)) -> np.ndarray:
    """Confusion matrix (rows: true class, columns: predicted) of ``model`` on a set."""
    model.eval()
    preds = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size].contiguous(memory_format=torch.channels_last)
            preds.append(model(batch).argmax(1))
    pred = torch.cat(preds).numpy()
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (y.numpy(), pred), 1)
    return matrix


def summarise(matrix: np.ndarray) -> dict:
    """Accuracy, per-class accuracy (recall; None for an absent class) and the matrix itself."""
    per_class = {name: (float(matrix[i, i] / matrix[i].sum()) if matrix[i].sum() else None)
                 for i, name in enumerate(ACTIONS)}
    return {"val_accuracy": float(np.trace(matrix) / max(matrix.sum(), 1)),
            "per_class_accuracy": per_class, "confusion_matrix": matrix.tolist()}


def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, batch_size: int) -> None:
    """Set BatchNorm running statistics to the exact averages of the final weights over ``x``.

    The moving averages lag the weights; after a short run they are far off and evaluation-mode
    accuracy collapses. One forward pass with a cumulative average fixes that for any run length.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = x[start:start + batch_size]
            if len(batch) >= 2:
                model(batch.contiguous(memory_format=torch.channels_last))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()


@contextlib.contextmanager
def _torch_settings(threads: int) -> Iterator[None]:
    """Thread count and deterministic algorithms for the duration of training, then restored."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)


def _plot_confusion(matrix: np.ndarray, path: Path, title: str) -> None:
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


def train(data: Path, out: Path, config: TrainConfig, progress: bool = True) -> Path:
    """Train on the dataset at ``data``; return the checkpoint path ``out/checkpoint.pt``."""
    config.validate()
    data, out = Path(data), Path(out)
    if not data.is_dir():
        raise FileNotFoundError(f"dataset not found: {data}")
    dataset = Dataset(data)
    depth_mm, labels = dataset.load()
    spec = spec_for(dataset, config.input_size)
    train_idx, val_idx = split_indices(len(labels), config.val_fraction, config.seed)

    inputs = torch.from_numpy(preprocess_millimetres(depth_mm, spec))
    del depth_mm
    targets = torch.from_numpy(labels.astype(np.int64))
    x_train, y_train = inputs[train_idx], targets[train_idx]
    x_val, y_val = inputs[val_idx], targets[val_idx]
    del inputs

    with _torch_settings(config.threads or os.cpu_count() or 1):
        torch.manual_seed(config.seed)
        generator = torch.Generator().manual_seed(config.seed)
        model = build_model(config.arch, len(ACTIONS), seed=config.seed).to(memory_format=torch.channels_last)
        criterion = nn.CrossEntropyLoss(weight=class_weights(labels[train_idx]))
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-4)
        steps_per_epoch = len(x_train) // config.batch_size + (len(x_train) % config.batch_size >= 2)
        total_steps = config.epochs * steps_per_epoch
        # Warm up for a quarter of the run, but for at least two steps: OneCycle needs both phases non-empty.
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=max(total_steps, 4),
            pct_start=min(0.5, max(0.25, 2.0 / max(total_steps, 4))))

        history, seen, train_time = [], 0, 0.0
        for epoch in range(1, config.epochs + 1):
            model.train()
            order = torch.randperm(len(x_train), generator=generator)
            flips = torch.rand(len(x_train), generator=generator) < 0.5
            bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{config.epochs}", unit="batch",
                       file=sys.stderr, disable=not progress, leave=False)
            total_loss, correct, count = 0.0, 0, 0
            started = time.perf_counter()
            for step in bar:
                index = order[step * config.batch_size:(step + 1) * config.batch_size]
                x, y = mirror(x_train[index], y_train[index], flips[index])
                logits = model(x.contiguous(memory_format=torch.channels_last))
                loss = criterion(logits, y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total_loss += float(loss.detach()) * len(y)
                correct += int((logits.argmax(1) == y).sum())
                count += len(y)
                bar.set_postfix(loss=f"{total_loss / count:.3f}", acc=f"{correct / count:.3f}")
            bar.close()
            train_time += time.perf_counter() - started
            seen += count
            if epoch == config.epochs:
                sample = torch.randperm(len(x_train), generator=generator)[:_BN_SAMPLES]
                recalibrate_batchnorm(model, x_train[sample], config.batch_size)
            matrix = confusion(model, x_val, y_val, config.batch_size * 2)
            summary = summarise(matrix)
            history.append({"epoch": epoch, "train_loss": total_loss / count, "train_accuracy": correct / count,
                            "val_accuracy": summary["val_accuracy"],
                            "val_per_class_accuracy": summary["per_class_accuracy"]})
            if progress:
                print(f"epoch {epoch}/{config.epochs}: loss {total_loss / count:.4f} "
                      f"train acc {correct / count:.3f} val acc {summary['val_accuracy']:.3f}", file=sys.stderr)

    images_per_second = seen / train_time if train_time > 0 else 0.0
    metrics = {**summary, "epochs": config.epochs, "history": history,
               "train_images": int(len(train_idx)), "val_images": int(len(val_idx)),
               "train_images_per_second": round(images_per_second, 1), "train_seconds": round(train_time, 2)}
    write_json_atomic(out / METRICS, metrics)
    _plot_confusion(matrix, out / CONFUSION_PNG,
                    f"{config.arch} @ {config.input_size}px, val acc {summary['val_accuracy']:.3f}")

    checkpoint = out / CHECKPOINT
    state = {name: tensor.contiguous() for name, tensor in model.state_dict().items()}
    meta = {"arch": config.arch, "input_size": config.input_size, "num_classes": len(ACTIONS),
            "epoch": config.epochs, "seed": config.seed}
    with atomic_path(checkpoint) as tmp:
        torch.save({"state_dict": state, "meta": meta}, tmp)
    write_manifest(checkpoint, new_manifest(
        "checkpoint", inputs={"dataset": dataset.sha256, "scenario": dataset.manifest.get("scenario_sha256")},
        arch=config.arch, preprocessing=spec.to_dict(), actions=actions.spec(), dataset_path=str(data),
        metrics={key: metrics[key] for key in ("val_accuracy", "per_class_accuracy", "confusion_matrix",
                                               "train_images", "val_images")},
        train_config=asdict(config)))
    return checkpoint


def load_checkpoint(path: str | Path) -> tuple[nn.Module, dict]:
    """A checkpoint as (model in eval mode, verified manifest); tensors only, never pickled code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    manifest = read_manifest(path, verify=True)
    if "sha256" not in manifest:
        raise ValueError(f"{path}: its manifest records no sha256, so the file cannot be verified")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable checkpoint: {str(exc).splitlines()[0]}") from None
    if not (isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict)
            and isinstance(payload.get("meta"), dict)):
        raise ValueError(f"{path} is not a sim2real checkpoint: expected {{'state_dict', 'meta'}}")
    meta = payload["meta"]
    model = build_model(str(meta.get("arch")), int(meta.get("num_classes", len(ACTIONS))))
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit {meta.get('arch')}: {str(exc).splitlines()[0]}") from None
    return model.eval(), manifest
